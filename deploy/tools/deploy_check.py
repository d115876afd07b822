"""`make deploy-check`: renders every kustomize build, validates what it renders against the vendored schemas,
and checks and tests the alerting rules.

Usage: python deploy/tools/deploy_check.py --kustomize K --kubeconform C --promtool P [BUILD ...]
       (every build of BUILDS when none named)

For each build (the overlays, and the Kafka topics that are applied apart from them):
  1. `kustomize build`, and a list of what it would create;
  2. kubeconform, strict and offline: the Kubernetes kinds against the official schemas of Kubernetes
     KUBERNETES_VERSION (the oldest the manifests must apply to), the custom resources against the schemas of
     their CRDs (Strimzi, Prometheus Operator), all vendored in deploy/schemas/ (deploy/schemas/README.md). A
     kind without a schema there is an error, not a skip.
Then, on the prod build's PrometheusRule: `promtool check rules` and `promtool test rules` with
deploy/k8s/base/alerts.test.yaml (each alert fires on the failure it is for, and stays quiet on a healthy series).
Exits non-zero when anything fails.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = ROOT / "deploy" / "schemas"
# build name -> kustomization folder. The topics are a build of their own: deleting the application (its
# overlay) must not delete the topics, and with them every event they hold.
BUILDS = {
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
    "topics-dev": K8S / "topics" / "dev",
    "topics-prod": K8S / "topics" / "prod",
}
KUBERNETES_VERSION = "1.30.14"
STRIMZI_VERSION = "1.2.0"
PROMETHEUS_OPERATOR_VERSION = "v0.94.1"
# kubeconform's templates: a Kubernetes kind by kind and group-version, a custom resource by group, kind, version.
_KIND = "{{ .ResourceKind }}{{ .KindSuffix }}.json"
_CRD = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
SCHEMA_LOCATIONS = (
    f"{SCHEMAS}/kubernetes-v{KUBERNETES_VERSION}/{_KIND}",
    f"{SCHEMAS}/strimzi-{STRIMZI_VERSION}/{_CRD}",
    f"{SCHEMAS}/prometheus-operator-{PROMETHEUS_OPERATOR_VERSION}/{_CRD}",
)
RULE_TESTS = K8S / "base" / "alerts.test.yaml"
RULES_FILE = "keyward.rules.yaml"  # the name alerts.test.yaml's rule_files gives the rules


def render(kustomize: str, folder: Path) -> str:
    return subprocess.run([kustomize, "build", str(folder)], check=True, capture_output=True, text=True).stdout


def documents(rendered: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def kubeconform_command(kubeconform: str) -> list[str]:
    command = [kubeconform, "-strict", "-summary", "-kubernetes-version", KUBERNETES_VERSION]
    for location in SCHEMA_LOCATIONS:
        command += ["-schema-location", location]
    return command


def validate(kubeconform: str, rendered: str) -> subprocess.CompletedProcess[str]:
    """kubeconform on rendered YAML (stdin); returncode 0 when every resource is valid."""
    return subprocess.run(kubeconform_command(kubeconform), input=rendered, capture_output=True, text=True)


def rule_groups(docs: list[dict]) -> dict:
    """The Prometheus rules file of the build's PrometheusRule (its spec is one)."""
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    return rule["spec"]


def without_runbooks(groups: dict) -> dict:
    """The rules as the rule tests see them: runbook_url, a constant per alert, left out of the annotations
    each test expects (test_monitoring.py checks it)."""
    copy = yaml.safe_load(yaml.safe_dump(groups))
    for group in copy["groups"]:
        for rule in group["rules"]:
            rule.get("annotations", {}).pop("runbook_url", None)
    return copy


def check_rules(promtool: str, groups: dict, tests: Path = RULE_TESTS) -> list[subprocess.CompletedProcess[str]]:
    """`promtool check rules` on the rules, and `promtool test rules` with `tests` beside a copy of them."""
    with tempfile.TemporaryDirectory(prefix="keyward-rules-") as tmp:
        (Path(tmp) / "check.rules.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
        (Path(tmp) / RULES_FILE).write_text(yaml.safe_dump(without_runbooks(groups), sort_keys=False))
        shutil.copyfile(tests, Path(tmp) / tests.name)
        return [
            subprocess.run([promtool, "check", "rules", "check.rules.yaml"], cwd=tmp, capture_output=True, text=True),
            subprocess.run([promtool, "test", "rules", tests.name], cwd=tmp, capture_output=True, text=True),
        ]


def summary(name: str, docs: list[dict]) -> str:
    kinds = Counter(doc["kind"] for doc in docs)
    lines = [f"== {name}: {len(docs)} resources ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})"]
    for doc in sorted(docs, key=lambda d: (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])):
        meta = doc["metadata"]
        lines.append(f"  {doc['kind']:<24} {meta.get('namespace', '-'):<14} {meta['name']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kustomize", required=True)
    parser.add_argument("--kubeconform", required=True)
    parser.add_argument("--promtool", required=True)
    parser.add_argument("builds", nargs="*", metavar="BUILD", help=f"one of {', '.join(BUILDS)}")
    args = parser.parse_args(argv)
    unknown = set(args.builds) - set(BUILDS)
    if unknown:
        parser.error(f"unknown build(s) {', '.join(sorted(unknown))}; known: {', '.join(BUILDS)}")
    failed: list[str] = []
    rendered: dict[str, list[dict]] = {}
    for name in args.builds or list(BUILDS):
        try:
            text = render(args.kustomize, BUILDS[name])
        except subprocess.CalledProcessError as exc:
            print(f"== {name}: kustomize build failed\n{exc.stderr}", file=sys.stderr)
            failed.append(f"{name}: kustomize build")
            continue
        rendered[name] = documents(text)
        print(summary(name, rendered[name]))
        result = validate(args.kubeconform, text)
        print(f"  kubeconform (strict, Kubernetes {KUBERNETES_VERSION} and the CRDs' schemas): {result.stdout.strip()}")
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            failed.append(f"{name}: kubeconform")
    if "prod" in rendered:
        for result in check_rules(args.promtool, rule_groups(rendered["prod"])):
            print(f"== promtool {' '.join(result.args[1:3])}\n{result.stdout.strip()}")
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
                failed.append(f"promtool {' '.join(result.args[1:3])}")
    if failed:
        print(f"deploy-check FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
