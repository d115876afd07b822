"""The kustomize builds: they render, validate against the real schemas (kubeconform, strict, offline: the
Kubernetes kinds against Kubernetes' own, the custom resources against their CRDs'), and hang together."""

import copy
import importlib.util
import json
import re

import pytest
import yaml

from shared.durations import parse_duration
from tests.integration.deploy.conftest import BUILDS, OVERLAYS, ROOT, TOPICS
from tests.integration.deploy.manifests import (
    COMMANDS,
    PGBOUNCER,
    PORTS,
    SERVICES,
    all_containers,
    config_data,
    deployment,
    environment,
    main_container,
    of_kind,
    one,
    pod_templates,
)

_spec = importlib.util.spec_from_file_location("deploy_check", ROOT / "deploy/tools/deploy_check.py")
assert _spec and _spec.loader
deploy_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy_check)


def kubeconform_errors(kubeconform: str, docs: list[dict]) -> str:
    """What kubeconform says of `docs` ("" when every one is valid)."""
    result = deploy_check.validate(kubeconform, yaml.safe_dump_all(docs))
    return "" if result.returncode == 0 else result.stdout + result.stderr


@pytest.mark.parametrize("build", BUILDS)
def test_every_resource_validates_against_the_kubernetes_schemas_or_its_crds_schema(rendered_text, kubeconform, build):
    result = deploy_check.validate(kubeconform, rendered_text[build])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Skipped: 0" in result.stdout and "Invalid: 0" in result.stdout, result.stdout


def test_the_schemas_refuse_misspelled_fields_removed_api_versions_and_what_a_crd_requires(rendered, kubeconform):
    docs = rendered["prod"]
    deploy = copy.deepcopy(deployment(docs, "keys"))
    deploy["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    rule = copy.deepcopy(one(docs, "PrometheusRule", "keyward"))
    rule["spec"]["groups"][0]["rules"][0]["expression"] = rule["spec"]["groups"][0]["rules"][0].pop("expr")
    monitor = copy.deepcopy(one(docs, "ServiceMonitor", "keyward-keys"))
    monitor["spec"]["endpoints"][0]["scrapeIntervall"] = "30s"
    topic = one(rendered[TOPICS["prod"]], "KafkaTopic", "apikeys.lifecycle")
    removed_version = copy.deepcopy(topic) | {"apiVersion": "kafka.strimzi.io/v1beta2"}  # gone in Strimzi 1.0
    no_spec = {k: v for k, v in topic.items() if k != "spec"}  # required by v1
    misspelled = copy.deepcopy(topic)
    misspelled["spec"]["replicationFactor"] = misspelled["spec"].pop("replicas")
    user = one(docs, "KafkaUser", "keyward-notifier-kafka")
    one_operation = copy.deepcopy(user)  # v1beta2's `operation`, gone from v1: `operations` only
    one_operation["spec"]["authorization"]["acls"][0]["operation"] = "Read"
    unknown_authentication = copy.deepcopy(user)
    unknown_authentication["spec"]["authentication"]["type"] = "scram-sha-256"
    assert kubeconform_errors(kubeconform, [topic, user]) == ""
    for broken in (deploy, rule, monitor, removed_version, no_spec, misspelled, one_operation, unknown_authentication):
        assert kubeconform_errors(kubeconform, [broken]), f"accepted: {broken['kind']} {broken.get('spec', '')}"


def test_the_vendored_schemas_are_the_ones_their_readme_names():
    readme = (ROOT / "deploy/schemas/README.md").read_text()
    vendor = (ROOT / "deploy/tools/schemas/vendor.sh").read_text()
    for source, version in (
        ("kubernetes", f"v{deploy_check.KUBERNETES_VERSION}"),
        ("strimzi", deploy_check.STRIMZI_VERSION),
        ("prometheus-operator", deploy_check.PROMETHEUS_OPERATOR_VERSION),
    ):
        assert (ROOT / "deploy/schemas" / f"{source}-{version}").is_dir(), f"{source}-{version}"
        assert version in readme and f"={version}" in vendor, f"{source} {version}"
    assert sorted(p.name for p in (ROOT / "deploy/schemas").iterdir() if p.is_dir()) == sorted(
        [
            f"kubernetes-v{deploy_check.KUBERNETES_VERSION}",
            f"strimzi-{deploy_check.STRIMZI_VERSION}",
            f"prometheus-operator-{deploy_check.PROMETHEUS_OPERATOR_VERSION}",
        ]
    ), "one version of each source"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_its_deployment_service_budget_and_monitor(rendered, overlay):
    docs = rendered[overlay]
    for service in SERVICES:
        name = f"keyward-{service}"
        pod_labels = deployment(docs, service)["spec"]["template"]["metadata"]["labels"]
        svc = one(docs, "Service", name)
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        assert svc["spec"]["ports"] == [
            {"name": "http", "port": PORTS[service], "targetPort": "http", "protocol": "TCP"}
        ]
        assert one(docs, "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        monitor = one(docs, "ServiceMonitor", name)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert monitor["spec"]["endpoints"][0]["port"] == "http"
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        # The request metrics' own `service` label must win over the operator's target label of that name.
        assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert sorted(h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler")) == [
        "keyward-gateway",
        "keyward-keys",
        "keyward-keys-verify",
    ]
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        scaled = one(docs, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in scaled["spec"], "an autoscaled Deployment must leave replicas to its HPA"
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_production_runs_at_least_three_replicas_of_the_autoscaled_services_and_serves_the_console_over_tls(rendered):
    docs = rendered["prod"]
    assert all(h["spec"]["minReplicas"] >= 3 for h in of_kind(docs, "HorizontalPodAutoscaler"))
    (ingress,) = of_kind(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "keyward-gateway", "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_console_where_anyone_signs_in_as_anyone_is_not_published(rendered, overlay):
    """AUTH_MODE=dev lists the directory on the sign-in page and lets anyone be anyone: such a console is
    reached only through `kubectl port-forward`, never through an Ingress (let alone a plain-HTTP one)."""
    docs = rendered[overlay]
    auth_mode = config_data(
        docs,
        next(
            c["metadata"]["name"]
            for c in of_kind(docs, "ConfigMap")
            if c["metadata"]["name"].startswith("keyward-config")
        ),
    )["AUTH_MODE"]
    ingresses = of_kind(docs, "Ingress")
    if auth_mode == "dev":
        assert ingresses == [], f"{overlay}: AUTH_MODE=dev published by an Ingress"
    for ingress in ingresses:
        assert ingress["spec"].get("tls"), f"{overlay}: the console over plain HTTP"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_as_non_root_on_a_read_only_root_without_capabilities(rendered, overlay):
    templates = list(pod_templates(rendered[overlay]))
    # Four services, the keys service's verify and relay, the re-encryption job; in production PgBouncer too.
    assert len(templates) == (8 if overlay == "prod" else 7)
    for where, template in templates:
        pod = template["spec"]
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] == 10001, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        tmp = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in all_containers(template):
            at = f"{where} container {container['name']}"
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, at
            assert sc["readOnlyRootFilesystem"] is True, at
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001, at
            assert sc.get("privileged", False) is False, at
            assert sc["capabilities"] == {"drop": ["ALL"]}, at
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, at
            assert any(m["mountPath"] == "/tmp" and m["name"] in tmp for m in container["volumeMounts"]), at
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{at}: {bound}"
            image = container["image"].split(":")[0]
            assert image.endswith("pgbouncer" if where == f"Deployment/{PGBOUNCER}" else "keyward"), at


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_is_probed_and_stops_with_a_pre_stop_pause(rendered, overlay):
    """(test_shutdown_budget.py adds the pause to the code's stop and holds the sum to the grace period.)"""
    docs = rendered[overlay]
    for service in SERVICES:
        package, command, port_variable = COMMANDS[service]
        container = main_container(docs, service)
        assert container["args"] == [f"services.{package}", command]
        assert (ROOT / "services" / package / "__main__.py").exists()  # the commands run in tests of their own
        assert container["ports"] == [{"name": "http", "containerPort": PORTS[service], "protocol": "TCP"}]
        assert {"name": port_variable, "value": str(PORTS[service])} in container["env"]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep" and 2 <= int(command[1]) <= 15, command


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_with_a_schema_migrate_it_in_an_init_container(rendered, overlay):
    docs = rendered[overlay]
    for service in ("keys", "keys-relay", "notifier", "reaper", "gateway"):
        schema = COMMANDS[service][0]
        (init,) = deployment(docs, service)["spec"]["template"]["spec"]["initContainers"]
        assert init["args"] == ["shared.migrate", schema]
        assert init["image"] == main_container(docs, service)["image"]
        assert any((ROOT / "services" / schema / "migrations").glob("*.sql"))
        assert "DATABASE_URL" in environment(docs, init)[1]
    # The gateway's schema holds the console's sessions.
    assert "DATABASE_URL" in environment(docs, main_container(docs, "gateway"))[1]
    # Verify's pods, reached from other namespaces, wait for the keys schema as the service's own login.
    (wait,) = deployment(docs, "keys-verify")["spec"]["template"]["spec"]["initContainers"]
    assert wait["args"] == ["shared.migrate", "--wait", "keys"]
    ((variable, (secret, key, _)),) = environment(docs, wait)[1].items()
    assert (variable, secret.startswith("keyward-keys-verify"), key) == ("DATABASE_URL", True, "DATABASE_URL")


def test_the_reencryption_job_is_a_suspended_template_running_the_rotation_command(rendered):
    for overlay in OVERLAYS:
        cron = one(rendered[overlay], "CronJob", "keyward-reencrypt")
        assert cron["spec"]["suspend"] is True
        (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["services.keys", "reencrypt"]
        assert container["image"] == main_container(rendered[overlay], "keys")["image"]


def test_topics_have_the_local_stacks_partitions_and_the_dead_letter_retention(rendered):
    local: dict[str, tuple[int, dict[str, str]]] = {}
    for line in (ROOT / "deploy/local/topics.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            topic, count, *options = line.split()
            local[topic] = (int(count), dict(o.split("=", 1) for o in options))
    for overlay in OVERLAYS:
        topics = {t["metadata"]["name"]: t for t in of_kind(rendered[TOPICS[overlay]], "KafkaTopic")}
        assert set(topics) == set(local)
        for name, (partitions, configs) in local.items():
            assert topics[name]["apiVersion"] == "kafka.strimzi.io/v1", "v1beta2 is gone from Strimzi 1.0"
            assert topics[name]["spec"]["partitions"] == partitions
            for key, value in configs.items():
                assert str(topics[name]["spec"]["config"][key]) == value
            assert topics[name]["metadata"]["namespace"] == "kafka", "topics stay with their Kafka cluster"
    dlq = one(rendered[TOPICS["prod"]], "KafkaTopic", "apikeys.lifecycle.dlq")
    assert dlq["spec"]["config"]["retention.ms"] == 14 * 86400_000
    assert one(rendered[TOPICS["prod"]], "KafkaTopic", "apikeys.lifecycle")["spec"]["replicas"] == 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deleting_the_application_does_not_delete_its_topics(rendered, overlay):
    """The Topic Operator deletes a topic, and its events, with its KafkaTopic: the topics are a build of their
    own (deploy/k8s/topics/), which `kubectl delete -k deploy/k8s/overlays/<env>` does not touch."""
    assert of_kind(rendered[overlay], "KafkaTopic") == []
    assert {d["kind"] for d in rendered[TOPICS[overlay]]} == {"KafkaTopic"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_outbox_keeps_sent_events_longer_than_the_topic_so_older_ones_can_be_replayed_from_it(rendered, overlay):
    docs = rendered[overlay]
    relay_env, _ = environment(docs, main_container(docs, "keys-relay"))
    kept = parse_duration(relay_env["OUTBOX_RETENTION"]).total_seconds()
    topic = one(rendered[TOPICS[overlay]], "KafkaTopic", "apikeys.lifecycle")
    assert kept > topic["spec"]["config"]["retention.ms"] / 1000, "events older than the topic's retention are lost"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pulled_again_for_a_moving_tag_and_pinned_by_digest_in_production(rendered, overlay):
    for where, template in pod_templates(rendered[overlay]):
        for container in all_containers(template):
            image, policy = container["image"], container.get("imagePullPolicy")
            if overlay == "prod":
                assert re.fullmatch(r"[\w./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}", image), f"{where}: {image}"
            else:
                assert "@sha256:" not in image and policy == "Always", f"{where}: {image} {policy}"


def test_production_spreads_replicas_over_zones_strictly_so_losing_a_zone_leaves_every_service_running(rendered):
    for service in SERVICES:
        spec = deployment(rendered["prod"], service)["spec"]["template"]["spec"]
        (zone,) = [c for c in spec["topologySpreadConstraints"] if c["topologyKey"] == "topology.kubernetes.io/zone"]
        assert zone["whenUnsatisfiable"] == "DoNotSchedule", service
        assert zone["maxSkew"] == 1 and "pod-template-hash" in zone["matchLabelKeys"], service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_progress_deadline_that_kube_state_metrics_reports(rendered, overlay):
    for service in SERVICES:
        assert deployment(rendered[overlay], service)["spec"]["progressDeadlineSeconds"] == 600, service


def test_the_dashboard_ships_as_a_configmap_the_grafana_sidecar_loads(rendered):
    for overlay in OVERLAYS:
        cm = one(rendered[overlay], "ConfigMap", "keyward-dashboard")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        dashboard = json.loads(cm["data"]["keyward.json"])
        assert dashboard["uid"] == "keyward"
        assert len([p for p in dashboard["panels"] if p["type"] == "timeseries"]) >= 15
