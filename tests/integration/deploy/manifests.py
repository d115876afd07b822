"""Helpers to read rendered manifests: find resources, walk pod templates, resolve a container's environment,
and the settings a service builds from it."""

import base64
import importlib
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

Doc = dict[str, Any]
# Every Deployment of ours: the four services, and the keys service's verify and relay run apart.
SERVICES = ("keys", "keys-verify", "keys-relay", "notifier", "reaper", "gateway")
# The service each workload runs (whose Settings it reads, whose Secret it may read): a Deployment its own, the
# re-encryption CronJob the keys service's.
WORKLOADS = {f"keyward-{s}": s for s in SERVICES} | {"keyward-reencrypt": "keys"}
# Workloads that run someone else's image: PgBouncer, where the prod overlay adds it (deploy/k8s/pgbouncer).
PGBOUNCER = "keyward-pgbouncer"
THIRD_PARTY = (PGBOUNCER,)
# The Kafka cluster's CA, which operators copy from Strimzi's namespace: public, every Kafka client mounts it.
KAFKA_CA_SECRET = "keyward-cluster-ca-cert"
PORTS = {"gateway": 8080, "keys": 8081, "keys-verify": 8081, "notifier": 8082, "reaper": 8083, "keys-relay": 8091}
# What each one runs: (package under services/, command, the variable that sets its port).
COMMANDS = {s: (s, "serve", "PORT") for s in ("keys", "notifier", "reaper", "gateway")} | {
    "keys-verify": ("keys", "serve", "PORT"),
    "keys-relay": ("keys", "relay", "RELAY_PORT"),
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


def workloads(docs: list[Doc]) -> Iterator[tuple[str, str, Doc]]:
    """(kind/name, the service it runs, pod template) of every workload that runs one of ours (not PgBouncer)."""
    for where, template in pod_templates(docs):
        name = where.split("/", 1)[1]
        if name not in THIRD_PARTY:
            yield where, WORKLOADS[name], template


def secret_names(docs: list[Doc]) -> dict[str, str]:
    """The Secrets the build generates (the dev overlay's): rendered name (with kustomize's hash) -> its own name."""
    return {d["metadata"]["name"]: d["metadata"]["name"].rsplit("-", 1)[0] for d in of_kind(docs, "Secret")}


def settings_class(service: str) -> Any:
    if service == "keys-relay":
        return importlib.import_module("services.keys.config").RelaySettings
    if service == "keys-verify":  # the keys service with SERVES=verify
        return importlib.import_module("services.keys.config").Settings
    return importlib.import_module(f"services.{service}.config").Settings


def env_names(service: str) -> set[str]:
    """The variables the service's Settings read (verify's process: all but the administrators' secrets)."""
    cls = settings_class(service)
    names = {name.upper() for name in cls.model_fields if name != "secret_fields"}
    if service == "keys-verify":
        names -= {name.upper() for name in cls.ADMIN_SECRETS}
    return names


def settings_from(service: str, env: Mapping[str, str]) -> Any:
    """The service's Settings built from `env` alone (never from this process's environment)."""

    class FromEnvOnly(settings_class(service)):  # type: ignore[misc]
        @classmethod
        def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, **others: Any) -> tuple[Any, ...]:
            return (init_settings,)

    known = env_names(service)
    return FromEnvOnly(**{name.lower(): value for name, value in env.items() if name in known})


def production_secret(key: str) -> str:
    """A value of the right shape for each secret an operator creates, with nothing of a placeholder in it."""
    if key in ("KEY_HMAC_SECRETS", "KEY_ENCRYPTION_KEYS"):
        return f"k2026a:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    if key in ("SERVICE_TOKENS", "NOTICES_TOKENS"):
        return ",".join(f"{n}:{secrets.token_urlsafe(24)}" for n in ("gateway", "notifier", "reaper", "voice"))
    if key in ("DATABASE_URL", "MIGRATIONS_DATABASE_URL"):
        return "postgresql://keyward:pw@db.internal:5432/keyward"
    return secrets.token_urlsafe(32)


def resolve(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The container's environment with every secret filled in: from the Secrets the build generates, else (what
    operators and Strimzi's User Operator create) a value of the right shape. A missing key must be optional."""
    values, refs = environment(docs, container)
    generated = {s["metadata"]["name"]: s["data"] for s in of_kind(docs, "Secret")}
    for var, (secret, key, optional) in refs.items():
        if secret not in generated:
            values[var] = production_secret(key)
        elif key in generated[secret]:
            values[var] = base64.b64decode(generated[secret][key]).decode()
        else:
            assert optional, f"{var}: {secret} has no {key}"
    return values
