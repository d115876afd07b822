"""Helpers to read rendered manifests: find resources, walk pod templates, resolve a container's environment."""

from collections.abc import Iterator
from typing import Any

Doc = dict[str, Any]
# Every Deployment of ours: the four services, and the keys service's relay run apart.
SERVICES = ("keys", "keys-relay", "notifier", "reaper", "gateway")
PORTS = {"gateway": 8080, "keys": 8081, "notifier": 8082, "reaper": 8083, "keys-relay": 8091}
# What each one runs: (package under services/, command, the variable that sets its port).
COMMANDS = {s: (s, "serve", "PORT") for s in ("keys", "notifier", "reaper", "gateway")} | {
    "keys-relay": ("keys", "relay", "RELAY_PORT")
}


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_templates(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(kind/name, pod template) of every workload."""
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]
        elif d["kind"] == "CronJob":
            yield f"CronJob/{d['metadata']['name']}", d["spec"]["jobTemplate"]["spec"]["template"]


def all_containers(template: Doc) -> list[Doc]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def config_data(docs: list[Doc], name: str) -> dict[str, str]:
    return dict(one(docs, "ConfigMap", name)["data"])


def environment(docs: list[Doc], container: Doc) -> tuple[dict[str, str], dict[str, tuple[str, str, bool]]]:
    """(plain values, secret references name -> (secret, key, optional)) the container is started with."""
    values: dict[str, str] = {}
    secrets: dict[str, tuple[str, str, bool]] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"only ConfigMaps are read whole: {source}"
        values |= config_data(docs, source["configMapRef"]["name"])
    for var in container.get("env", []):
        if "value" in var:
            values[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            secrets[var["name"]] = (ref["name"], ref["key"], bool(ref.get("optional", False)))
    return values, secrets


def deployment(docs: list[Doc], service: str) -> Doc:
    return one(docs, "Deployment", f"keyward-{service}")


def main_container(docs: list[Doc], service: str) -> Doc:
    (container,) = [c for c in deployment(docs, service)["spec"]["template"]["spec"]["containers"]]
    return container
