"""Least privilege in Kubernetes (issue 17): each Kafka client signs in as a principal of its own whose
KafkaUser has exactly the rights the local broker gives that principal (deploy/local/kafka-access.txt), and each
container reads only its own service's Secret, only keys its service's settings read.

Each check returns what it finds wrong; the last test holds every check to a deliberately wrong manifest."""

import copy
import posixpath
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from deploy.local.runenv import ACCOUNT
from tests.integration.deploy.conftest import OVERLAYS, ROOT
from tests.integration.deploy.manifests import (
    KAFKA_CA_SECRET,
    Doc,
    config_data,
    env_names,
    environment,
    main_container,
    of_kind,
    one,
    resolve,
    secret_names,
    settings_from,
    workloads,
)

LOCAL_ACCESS = ROOT / "deploy/local/kafka-access.txt"
# Principals of the local broker that no Keyward pod is: the super user (the operators' tools), and other
# platform services (in Kubernetes each brings a KafkaUser of its own: docs/operations.md).
NOT_KEYWARDS = {"admin", "platform"}
# (operation, resource type, name, pattern type), Strimzi's terms.
Right = tuple[str, str, str, str]


def local_rights(topic: str) -> dict[str, set[Right]]:
    """principal -> its rights on the local broker: a topic literal, a group a prefix (`*` any group)."""
    rights: dict[str, set[Right]] = {}
    for line in LOCAL_ACCESS.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user":
            rights.setdefault(words[1], set())
        else:
            assert words[0] == "allow" and len(words) == 5, line
            _, principal, operation, kind, name = words
            name = name.replace("{topic}", topic)
            pattern = "prefix" if kind == "group" and name != "*" else "literal"
            rights[principal].add((operation, kind, name, pattern))
    return rights


def kafka_user_rights(user: Doc) -> set[Right]:
    rights = set()
    for acl in user["spec"]["authorization"]["acls"]:
        assert acl.get("type", "allow") == "allow" and acl.get("host", "*") == "*", acl
        resource = acl["resource"]
        for operation in acl["operations"]:
            rights.add((operation, resource["type"], resource["name"], resource.get("patternType", "literal")))
    return rights


def keyward_config(docs: list[Doc]) -> dict[str, str]:
    return config_data(
        docs, next(c["metadata"]["name"] for c in of_kind(docs, "ConfigMap") if "KAFKA_TOPIC" in c["data"])
    )


def cluster(docs: list[Doc]) -> str:
    """The Strimzi cluster the services bootstrap from (`<cluster>-kafka-bootstrap.<namespace>.svc:<port>`)."""
    host = keyward_config(docs)["KAFKA_BOOTSTRAP_SERVERS"].split(",")[0].split(".")[0]
    assert host.endswith("-kafka-bootstrap"), host
    return host.removesuffix("-kafka-bootstrap")


def principals(docs: list[Doc]) -> dict[str, str]:
    """service -> the KafkaUser its Deployment signs in as (the Deployments that set KAFKA_USERNAME)."""
    found = {}
    for _, service, template in workloads(docs):
        for container in template["spec"]["containers"]:
            username = environment(docs, container)[0].get("KAFKA_USERNAME")
            if username is not None:
                found[service] = username
    return found


def acl_problems(docs: list[Doc]) -> list[str]:
    """Every Keyward principal of the local broker has a KafkaUser with exactly its rights, and nothing more."""
    problems = []
    local = local_rights(keyward_config(docs)["KAFKA_TOPIC"])
    users = {u["metadata"]["name"]: u for u in of_kind(docs, "KafkaUser")}
    mapped = {ACCOUNT[service]: user for service, user in principals(docs).items()}
    if set(mapped) != set(local) - NOT_KEYWARDS:
        problems.append(f"principals {sorted(mapped)} in Kubernetes, {sorted(set(local) - NOT_KEYWARDS)} locally")
    if set(mapped.values()) != set(users):
        problems.append(f"KafkaUsers {sorted(users)}, signed in as {sorted(mapped.values())}")
    for principal, name in mapped.items():
        user = users.get(name)
        if user is None:
            problems.append(f"{principal}: no KafkaUser {name}")
            continue
        if user["spec"]["authentication"] != {"type": "scram-sha-512"}:
            problems.append(f"{name}: authentication {user['spec']['authentication']}")
        if user["metadata"]["labels"].get("strimzi.io/cluster") != cluster(docs):
            problems.append(f"{name}: not a user of the cluster {cluster(docs)}")
        rights = kafka_user_rights(user)
        if rights != local.get(principal):
            problems.append(
                f"{name}: more than {principal} locally {sorted(rights - local[principal])}, "
                f"less {sorted(local[principal] - rights)}"
            )
    return problems


def ca_file_mounted(template: Doc, container: Doc, path: str, secret: str) -> bool:
    """`path` is the key ca.crt of the Secret `secret`, mounted read-only into the container."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        source = volumes.get(mount["name"], {}).get("secret")
        if source and source["secretName"] == secret and mount.get("readOnly"):
            for item in source.get("items", [{"key": "ca.crt", "path": "ca.crt"}]):
                if item["key"] == "ca.crt" and posixpath.join(mount["mountPath"], item["path"]) == path:
                    return True
    return False


def principal_problems(docs: list[Doc]) -> list[str]:
    """Every container whose settings use Kafka signs in over TLS as a principal no other service shares, with
    the password of that KafkaUser and the cluster's CA; every other container has no Kafka principal at all."""
    problems = []
    users = {u["metadata"]["name"] for u in of_kind(docs, "KafkaUser")}
    by_principal: dict[str, set[str]] = {}
    for where, service, template in workloads(docs):
        for container in [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]:
            at = f"{where} {container['name']}"
            values, refs = environment(docs, container)
            migrates = container["args"][:1] == ["shared.migrate"]
            try:
                uses_kafka = not migrates and settings_from(service, resolve(docs, container)).uses_kafka
            except ValidationError as error:
                problems.append(f"{at}: settings refused: {error}")
                continue
            username, password = values.get("KAFKA_USERNAME"), refs.get("KAFKA_PASSWORD")
            if not uses_kafka:
                if username is not None or password is not None:
                    problems.append(f"{at}: never reaches Kafka, yet has the principal {username} {password}")
                continue
            by_principal.setdefault(str(username), set()).add(service)
            if values.get("KAFKA_SECURITY_PROTOCOL") != "SASL_SSL":
                problems.append(f"{at}: KAFKA_SECURITY_PROTOCOL={values.get('KAFKA_SECURITY_PROTOCOL')}")
            if username not in users:
                problems.append(f"{at}: KAFKA_USERNAME={username} is no KafkaUser of the build")
            if password != (username, "password", False):
                problems.append(f"{at}: KAFKA_PASSWORD from {password}, not its KafkaUser's Secret {username}")
            if not ca_file_mounted(
                template, container, values.get("KAFKA_CA_FILE", ""), f"{cluster(docs)}-cluster-ca-cert"
            ):
                problems.append(f"{at}: KAFKA_CA_FILE={values.get('KAFKA_CA_FILE')} is not the cluster's CA")
            if not values["KAFKA_BOOTSTRAP_SERVERS"].endswith(":9093"):
                problems.append(f"{at}: bootstraps from {values['KAFKA_BOOTSTRAP_SERVERS']}, not the TLS listener")
    for username, services in by_principal.items():
        if len(services) > 1:
            problems.append(f"{username} is the principal of {sorted(services)}")
    return problems


def secret_problems(docs: list[Doc]) -> list[str]:
    """Each container reads its own service's Secret only (and its own KafkaUser's password, and the cluster's
    CA), each key under the variable its service's settings read; a generated Secret holds nothing more."""
    problems = []
    own_name = secret_names(docs)
    users = {u["metadata"]["name"] for u in of_kind(docs, "KafkaUser")}
    read: dict[str, set[str]] = {}
    for where, service, template in workloads(docs):
        mine = f"keyward-{service}"
        for volume in template["spec"].get("volumes", []):
            if "emptyDir" not in volume and volume.get("secret", {}).get("secretName") != KAFKA_CA_SECRET:
                problems.append(f"{where}: mounts {volume}")
        for container in [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]:
            at = f"{where} {container['name']}"
            values, refs = environment(docs, container)
            # A container that waits for the migrations (--wait) reads as the service does: its own login.
            migrates = container["args"][:1] == ["shared.migrate"] and "--wait" not in container["args"]
            for var, (secret, key, _) in refs.items():
                name = own_name.get(secret, secret)
                read.setdefault(name, set()).add(key)
                if name in users:
                    if (var, key, secret) != ("KAFKA_PASSWORD", "password", values.get("KAFKA_USERNAME")):
                        problems.append(f"{at}: {var} from {secret}/{key}, another principal's or not a password")
                elif name != mine:
                    problems.append(f"{at}: {var} from {name}, not its service's Secret {mine}")
                elif migrates:
                    if (var, key) != ("DATABASE_URL", "MIGRATIONS_DATABASE_URL"):
                        problems.append(f"{at}: a migration reads {var} from {key}")
                elif var not in env_names(service) or key != var:
                    problems.append(f"{at}: {var} from {key}, which {service}'s settings do not read as such")
    for secret in of_kind(docs, "Secret"):
        name = own_name[secret["metadata"]["name"]]
        extra = set(secret.get("data", {})) - read.get(name, set())
        if extra:
            problems.append(f"{name} holds {sorted(extra)}, which none of its service's containers reads")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_kafka_user_has_exactly_the_rights_its_principal_has_on_the_local_broker(rendered, overlay):
    problems = acl_problems(rendered[overlay])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_kafka_client_signs_in_over_tls_as_its_own_principal_and_nothing_else_has_one(rendered, overlay):
    docs = rendered[overlay]
    problems = principal_problems(docs)
    assert not problems, "\n".join(problems)
    assert set(principals(docs)) == {"keys-relay", "notifier", "reaper", "gateway"}
    assert {"name": "RUN_RELAY", "value": "false"} in main_container(docs, "keys")["env"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_container_reads_only_its_own_services_secret_and_only_keys_its_service_reads(rendered, overlay):
    problems = secret_problems(rendered[overlay])
    assert not problems, "\n".join(problems)


def _acls(docs: list[Doc], user: str) -> list[Doc]:
    return one(docs, "KafkaUser", user)["spec"]["authorization"]["acls"]


def _env(docs: list[Doc], service: str, name: str) -> dict[str, Any]:
    (var,) = [v for v in main_container(docs, service)["env"] if v["name"] == name]
    return var


def _ref(docs: list[Doc], service: str, name: str) -> dict[str, Any]:
    return _env(docs, service, name)["valueFrom"]["secretKeyRef"]


def _secret(docs: list[Doc], name: str) -> Doc:
    (secret,) = [s for s in of_kind(docs, "Secret") if secret_names(docs)[s["metadata"]["name"]] == name]
    return secret


LIFECYCLE_WRITE = {"resource": {"type": "topic", "name": "apikeys.lifecycle"}, "operations": ["Write"]}
# A wrong manifest: the check that must find it, what it says, and how the rendered build is spoiled.
Check = Callable[[list[Doc]], list[str]]
WRONG: dict[str, tuple[Check, str, Callable[[list[Doc]], object]]] = {
    "the notifier may write the lifecycle": (
        acl_problems,
        "more than notifier locally [('Write', 'topic', 'apikeys.lifecycle', 'literal')]",
        lambda d: _acls(d, "keyward-notifier-kafka").append(LIFECYCLE_WRITE),
    ),
    "the reaper may not write the dead letters": (
        acl_problems,
        "less [('Write', 'topic', 'apikeys.lifecycle.dlq', 'literal')]",
        lambda d: _acls(d, "keyward-reaper-kafka").pop(),
    ),
    "the notifier's group is any group": (
        acl_problems,
        "more than notifier locally [('Read', 'group', '*', 'literal')]",
        lambda d: _acls(d, "keyward-notifier-kafka")[1]["resource"].update(name="*", patternType="literal"),
    ),
    "the notifier signs in as the reaper": (
        principal_problems,
        "keyward-reaper-kafka is the principal of ['notifier', 'reaper']",
        lambda d: (
            _env(d, "notifier", "KAFKA_USERNAME").update(value="keyward-reaper-kafka"),
            _ref(d, "notifier", "KAFKA_PASSWORD").update(name="keyward-reaper-kafka"),
        ),
    ),
    "the relay reads another principal's password": (
        principal_problems,
        "keys-relay: KAFKA_PASSWORD from ('keyward-gateway-kafka', 'password', False)",
        lambda d: _ref(d, "keys-relay", "KAFKA_PASSWORD").update(name="keyward-gateway-kafka"),
    ),
    "the relay without TLS": (
        principal_problems,
        "SASL_PLAINTEXT",
        lambda d: _env(d, "keys-relay", "KAFKA_SECURITY_PROTOCOL").update(value="SASL_PLAINTEXT"),
    ),
    "the keys API given a principal": (
        principal_problems,
        "keys: never reaches Kafka, yet has the principal keyward-keys-kafka",
        lambda d: main_container(d, "keys")["env"].append({"name": "KAFKA_USERNAME", "value": "keyward-keys-kafka"}),
    ),
    "the gateway reads the notifier's Secret": (
        secret_problems,
        "gateway: KEYS_TOKEN from keyward-notifier, not its service's Secret keyward-gateway",
        lambda d: _ref(d, "gateway", "KEYS_TOKEN").update(name=_ref(d, "notifier", "KEYS_TOKEN")["name"]),
    ),
    "the relay holds key material": (
        secret_problems,
        "keys-relay: KEY_ENCRYPTION_KEYS from KEY_ENCRYPTION_KEYS, which keys-relay's settings do not read",
        lambda d: main_container(d, "keys-relay")["env"].append(
            {
                "name": "KEY_ENCRYPTION_KEYS",
                "valueFrom": {"secretKeyRef": _ref(d, "keys-relay", "DATABASE_URL") | {"key": "KEY_ENCRYPTION_KEYS"}},
            }
        ),
    ),
    "verify's pods hold the key-encryption keys": (
        secret_problems,
        "keyward-keys-verify keys: KEY_ENCRYPTION_KEYS from KEY_ENCRYPTION_KEYS, which keys-verify's settings do not read",
        lambda d: main_container(d, "keys-verify")["env"].append(
            {
                "name": "KEY_ENCRYPTION_KEYS",
                "valueFrom": {"secretKeyRef": _ref(d, "keys-verify", "DATABASE_URL") | {"key": "KEY_ENCRYPTION_KEYS"}},
            }
        ),
    ),
    "the reaper runs as the migrations' owner": (
        secret_problems,
        "reaper: DATABASE_URL from MIGRATIONS_DATABASE_URL, which reaper's settings do not read",
        lambda d: _ref(d, "reaper", "DATABASE_URL").update(key="MIGRATIONS_DATABASE_URL"),
    ),
}


@pytest.mark.parametrize("wrong", WRONG)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_checks_find_a_deliberately_wrong_manifest(rendered, overlay, wrong):
    check, says, spoil = WRONG[wrong]
    docs = copy.deepcopy(rendered[overlay])
    assert check(docs) == []
    spoil(docs)
    assert any(says in problem for problem in check(docs)), f"{wrong}: {check(docs)}"


def test_a_generated_secret_holding_another_services_value_is_found(rendered):
    docs = copy.deepcopy(rendered["dev"])
    keys_secret = _secret(docs, "keyward-keys")
    _secret(docs, "keyward-notifier")["data"]["SERVICE_TOKENS"] = keys_secret["data"]["SERVICE_TOKENS"]
    assert secret_problems(docs) == [
        "keyward-notifier holds ['SERVICE_TOKENS'], which none of its service's containers reads"
    ]
