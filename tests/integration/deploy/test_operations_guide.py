"""docs/operations.md says what the manifests do: its commands work as written (each names its namespace, waits
for one Deployment at a time, finds Strimzi's brokers by label), and its tables match the rendered builds."""

import re

import pytest

from tests.integration.deploy.conftest import ROOT
from tests.integration.deploy.manifests import (
    PORTS,
    SERVICES,
    all_containers,
    deployment,
    environment,
    main_container,
    of_kind,
    pod_templates,
)

GUIDE = (ROOT / "docs/operations.md").read_text()
NAMESPACE = {"dev": "keyward-dev", "prod": "keyward"}


def kubectl_commands() -> list[list[str]]:
    """Every kubectl command of the guide (code blocks and `inline` code), as words, pipes and $(...) split."""
    blocks = re.findall(r"```(?:sh|bash)?\n(.*?)```", GUIDE, re.DOTALL)
    inline = re.findall(r"`([^`\n]*kubectl [^`\n]*)`", re.sub(r"```.*?```", "", GUIDE, flags=re.DOTALL))
    commands = []
    for text in [*blocks, *inline]:
        text = re.sub(r"\\\n\s*", " ", text)
        for line in text.splitlines():
            line = line.split(" # ")[0]
            for part in re.split(r"\||&&|;|\$\(|\)", line):
                words = [w.strip("\"'") for w in part.split()]
                if "kubectl" in words:
                    commands.append(words[words.index("kubectl") :])
    return commands


def names_a_namespace(words: list[str]) -> bool:
    return "-n" in words or any(w.startswith(("--namespace", "-n=")) for w in words)


def test_the_guide_has_kubectl_commands_to_check():
    assert len(kubectl_commands()) >= 15


def test_every_kubectl_command_names_its_namespace():
    exempt = (["create", "namespace"], ["label", "namespace"], ["apply", "-f", "-"], ["apply", "-k"], ["delete", "-k"])
    missing = [
        " ".join(c)
        for c in kubectl_commands()
        if not names_a_namespace(c) and not any(c[1 : 1 + len(e)] == e for e in exempt)
    ]
    assert not missing, "\n".join(missing)


def test_rollout_status_waits_for_one_deployment_at_a_time_and_for_every_one_of_them():
    waited = []
    for command in kubectl_commands():
        if "rollout" in command and "status" in command:
            targets = [w for w in command if w.startswith(("deploy/", "deployment/"))]
            assert len(targets) == 1, f"kubectl rollout status takes one resource: {' '.join(command)}"
            waited.append(targets[0].split("/", 1)[1])
    assert {f"keyward-{s}" for s in SERVICES} <= set(waited), f"the first deployment waits for {waited}"


def test_strimzis_brokers_are_found_by_label_not_by_a_pod_name():
    """With node pools a broker's pod is named after its pool (keyward-<pool>-0), not keyward-kafka-0."""
    assert "keyward-kafka-0" not in GUIDE
    execs = [c for c in kubectl_commands() if "exec" in c and "-n" in c and c[c.index("-n") + 1] == "kafka"]
    assert execs, "the guide runs Kafka's tools in a broker"
    for command in execs:
        target = command[command.index("exec") + 1]
        assert target.startswith("$"), f"exec into a named pod: {' '.join(command)}"
    assert "strimzi.io/cluster=keyward,strimzi.io/broker-role=true" in GUIDE


def table(heading: str) -> list[list[str]]:
    """The rows (cells stripped of backticks) of the first table after `heading`."""
    section = GUIDE[GUIDE.index(heading) :]
    rows = re.search(r"((?:^\|.*\|\n)+)", section, re.MULTILINE)
    assert rows, heading
    lines = [line for line in rows.group(1).splitlines() if not re.match(r"^\|[-| ]+\|$", line)]
    return [[cell.strip().replace("`", "") for cell in line.strip("|").split("|")] for line in lines[1:]]


def test_what_runs_lists_each_deployment_with_its_command_port_and_replicas(rendered):
    rows = {row[0]: row for row in table("## What runs") if row[0].startswith("keyward-")}
    assert set(rows) == {f"keyward-{s}" for s in SERVICES}
    for service in SERVICES:
        name, command, port, replicas, *_ = rows[f"keyward-{service}"]
        assert command.startswith(" ".join(main_container(rendered["prod"], service)["args"])), name
        assert int(port) == PORTS[service], name
        counts = {}
        for overlay in ("dev", "prod"):
            hpa = [
                h
                for h in of_kind(rendered[overlay], "HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"]["name"] == name
            ]
            counts[overlay] = (
                f"{hpa[0]['spec']['minReplicas']}–{hpa[0]['spec']['maxReplicas']}"
                if hpa
                else str(deployment(rendered[overlay], service)["spec"]["replicas"])
            )
        if counts["dev"] == counts["prod"]:
            assert replicas.replace("HPA ", "") == counts["prod"], name
        else:
            assert replicas.replace("HPA ", "") == f"{counts['prod']} (dev {counts['dev']})", f"{name}: {counts}"


def test_the_shutdown_table_gives_each_deployments_pre_stop_pause_and_grace_period(rendered):
    rows = {row[0]: row for row in table("## Shutdown and rollouts") if row[0].startswith("keyward-")}
    assert set(rows) == {f"keyward-{s}" for s in SERVICES}
    for service in SERVICES:
        for overlay in ("dev", "prod"):
            pod = deployment(rendered[overlay], service)["spec"]["template"]["spec"]
            pre_stop = main_container(rendered[overlay], service)["lifecycle"]["preStop"]["exec"]["command"][1]
            row = rows[f"keyward-{service}"]
            assert row[1] == f"{pre_stop} s", f"{service}: preStop {row[1]}"
            assert row[-1] == f"{pod['terminationGracePeriodSeconds']} s", f"{service}: grace {row[-1]}"


def test_the_tool_versions_the_guide_names_are_the_pinned_ones():
    for script in ("install-kustomize.sh", "install-kubeconform.sh", "install-promtool.sh"):
        text = (ROOT / "deploy/tools" / script).read_text()
        version = re.search(r"(v\d+\.\d+\.\d+)", text.split("set -euo pipefail", 1)[1])
        assert version and version.group(1) in GUIDE, f"{script}: {version and version.group(1)}"


@pytest.mark.parametrize("overlay", ("dev", "prod"))
def test_the_namespaces_the_guide_names_are_the_overlays(rendered, overlay):
    namespaces = {d["metadata"].get("namespace") for d in rendered[overlay]}
    assert namespaces == {NAMESPACE[overlay]}
    assert f"namespace `{NAMESPACE[overlay]}`" in GUIDE or f"-n {NAMESPACE[overlay]}" in GUIDE


def test_the_secrets_table_lists_every_secret_and_key_production_reads(rendered):
    """Operators create the Secrets from this table: it names each one production reads and each key of it."""
    documented: dict[str, set[str]] = {}
    names: list[str] = []
    for row in table("### Secrets"):
        names = [n.strip() for n in row[0].split(",")] if row[0] else names
        for name in names:
            documented.setdefault(name, set()).update(k.strip() for k in row[1].split(","))
    read: dict[str, set[str]] = {}
    docs = rendered["prod"]
    for _, template in pod_templates(docs):
        for container in all_containers(template):
            for secret, key, _ in environment(docs, container)[1].values():
                read.setdefault(secret, set()).add(key)
        for volume in template["spec"]["volumes"]:
            if "secret" in volume:
                read.setdefault(volume["secret"]["secretName"], set()).update(
                    i["key"] for i in volume["secret"]["items"]
                )
    assert documented == read
