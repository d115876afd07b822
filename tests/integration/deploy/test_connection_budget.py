"""Every replica at its most fits PostgreSQL's `max_connections`, with room for migrations and operators.

From the rendered build and the settings' defaults (a value the manifests do not set is the default):

    PgBouncer's server connections (its pods at most x each database entry's max_db_connections, summed)
  + what reaches PostgreSQL directly: each workload's pods at most x its pools (the relay's lock connection too)
  + the migrations (one connection per init container that may run at once: each Deployment's surge)
  + operators (OPERATORS) and PostgreSQL's superuser_reserved_connections
        <= MAX_CONNECTIONS

A workload's pods at most: its HorizontalPodAutoscaler's maxReplicas (else its replicas) plus the rolling
update's maxSurge. Where its pools connect: its pod template's annotation `keyward.io/database` (`pgbouncer` or
`direct`, the default), which says what its Secret's DATABASE_URL must hold (docs/operations.md, "Database
connections"). Through PgBouncer, the clients' pools must fit its max_client_conn, the exports (each holds
a server connection for as long as it streams) at most half of the server connections of the keys service's
entry, and verify's pool goes to a database entry of its own (VERIFY_DATABASE_URL), whose server connections
no administrators' transaction can take.
"""

import configparser
import inspect
import re
from dataclasses import dataclass
from typing import Any

import pytest

import services.keys.__main__
from services.gateway.config import Settings as GatewaySettings
from services.keys.config import RelaySettings
from services.keys.config import Settings as KeysSettings
from services.notifier.config import Settings as NotifierSettings
from services.reaper.config import Settings as ReaperSettings
from tests.integration.deploy.conftest import OVERLAYS
from tests.integration.deploy.manifests import PGBOUNCER, Doc, environment, of_kind, one, pod_templates

# PostgreSQL's default; docs/operations.md says how to redo the sum for a database with another.
MAX_CONNECTIONS = 100
SUPERUSER_RESERVED = 3
# psql sessions, a pg_dump, a monitoring agent.
OPERATORS = 5
ROUTE = "keyward.io/database"


@dataclass
class Workload:
    name: str
    pods: int  # at most, a rollout's surge included
    surge: int
    route: str
    connections: int  # each pod's, at most
    migrations: int  # init containers that migrate


def setting(values: dict[str, str], settings: Any, name: str) -> Any:
    """The value the container is started with, else the setting's default."""
    if name.upper() in values:
        return values[name.upper()]
    return settings.model_fields[name].default


def reencrypt_pool_size() -> int:
    found = re.search(r"create_pool\([^)]*max_size=(\d+)", inspect.getsource(services.keys.__main__._reencrypt))
    assert found, "services.keys.__main__._reencrypt opens a pool of a known size"
    return int(found.group(1))


def pool_connections(args: list[str], values: dict[str, str]) -> int:
    """What one process of `args` connects at most: its pools, and the relay's lock connection."""
    command = " ".join(args)
    if command == "services.keys serve":
        serves = setting(values, KeysSettings, "serves")
        relay = serves != "verify" and str(setting(values, KeysSettings, "run_relay")).lower() not in (
            "false",
            "0",
            "no",
            "off",
        )
        admin = int(setting(values, KeysSettings, "db_pool_size")) if serves != "verify" else 0
        verify = int(setting(values, KeysSettings, "verify_db_pool_size")) if serves != "admin" else 0
        return admin + verify + (1 if relay else 0)
    if command == "services.keys relay":
        return int(setting(values, RelaySettings, "relay_db_pool_size")) + 1
    if command == "services.keys reencrypt":
        return reencrypt_pool_size()
    if command == "services.notifier serve":
        return int(setting(values, NotifierSettings, "db_pool_size"))
    if command == "services.reaper serve":
        return int(setting(values, ReaperSettings, "db_pool_size"))
    if command == "services.gateway serve":
        sessions = setting(values, GatewaySettings, "auth_mode") != "jwt"
        return int(setting(values, GatewaySettings, "db_pool_size")) if sessions else 0
    raise AssertionError(f"a workload this test does not know: {command}")


def pods_at_most(docs: list[Doc], kind: str, spec: Doc, name: str) -> tuple[int, int]:
    """(pods at most, of which a rollout's surge)."""
    if kind == "CronJob":
        assert spec.get("concurrencyPolicy") == "Forbid", name
        return 1, 0
    hpa = [h for h in of_kind(docs, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == name]
    replicas = hpa[0]["spec"]["maxReplicas"] if hpa else spec["replicas"]
    surge = spec.get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", 1)
    assert isinstance(surge, int), f"{name}: maxSurge as a number of pods"
    return replicas + surge, surge


def workloads(docs: list[Doc]) -> list[Workload]:
    found = []
    for kind_name, template in pod_templates(docs):
        kind, name = kind_name.split("/")
        if name == PGBOUNCER:
            continue
        owner = one(docs, kind, name)["spec"]
        pods, surge = pods_at_most(docs, kind, owner, name)
        (main,) = template["spec"]["containers"]
        values, _ = environment(docs, main)
        migrations = [c for c in template["spec"].get("initContainers", []) if c["args"][:1] == ["shared.migrate"]]
        route = template["metadata"].get("annotations", {}).get(ROUTE, "direct")
        assert route in ("direct", "pgbouncer"), f"{kind_name}: {ROUTE}: {route}"
        found.append(Workload(name, pods, surge, route, pool_connections(main["args"], values), len(migrations)))
    return found


VERIFY_ENTRY = "keyward_verify"


@dataclass
class Bouncer:
    pods: int
    entries: dict[str, int]  # each database entry's server connections, per pod
    max_client_conn: int

    @property
    def server_connections(self) -> int:  # each pod's, to the database
        return sum(self.entries.values())


def database_entries(databases_ini: str, default_most: int) -> dict[str, int]:
    """Each entry of PgBouncer's [databases] and its server connections at most (its own, else the global one)."""
    ini = configparser.ConfigParser(strict=False, interpolation=None)
    ini.read_string(databases_ini)
    entries = {}
    for name, value in ini["databases"].items():
        options = dict(part.split("=", 1) for part in value.split())
        entries[name] = int(options.get("max_db_connections", default_most))
    return entries


def pgbouncer(docs: list[Doc]) -> Bouncer | None:
    deployments = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == PGBOUNCER]
    if not deployments:
        return None
    (deployment,) = deployments
    ini = configparser.ConfigParser(strict=False, interpolation=None, allow_no_value=True)
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    (config,) = [v["configMap"]["name"] for v in volumes if "configMap" in v]  # with kustomize's hash
    data = one(docs, "ConfigMap", config)["data"]
    ini.read_string(data["pgbouncer.ini"])
    settings = ini["pgbouncer"]
    assert settings["pool_mode"] == "transaction"
    assert "%include /etc/pgbouncer/databases.ini" in data["pgbouncer.ini"]
    strategy = deployment["spec"]["strategy"]["rollingUpdate"]
    pods = deployment["spec"]["replicas"] + strategy.get("maxSurge", 0)
    entries = database_entries(data["databases.ini"], int(settings["max_db_connections"]))
    return Bouncer(pods, entries, int(settings["max_client_conn"]))


def budget(docs: list[Doc]) -> dict[str, int]:
    """Each share of max_connections, by name."""
    bouncer = pgbouncer(docs)
    shares: dict[str, int] = {}
    for w in workloads(docs):
        if w.route == "direct":
            shares[f"{w.name} ({w.pods} pods x {w.connections})"] = w.pods * w.connections
        else:
            assert bouncer is not None, f"{w.name} goes through PgBouncer, which this build does not run"
        if w.migrations:
            shares[f"{w.name}'s migrations ({w.surge} at once)"] = w.surge * w.migrations
    if bouncer is not None:
        per_entry = " + ".join(f"{n} {c}" for n, c in bouncer.entries.items())
        shares[f"PgBouncer ({bouncer.pods} pods x ({per_entry}))"] = bouncer.pods * bouncer.server_connections
    shares["operators"] = OPERATORS
    shares["superuser_reserved_connections"] = SUPERUSER_RESERVED
    return shares


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_replica_at_its_most_fits_max_connections_with_room_for_migrations_and_operators(rendered, overlay):
    shares = budget(rendered[overlay])
    total = sum(shares.values())
    detail = "\n".join(f"  {n}: {c}" for n, c in sorted(shares.items(), key=lambda s: -s[1]))
    assert total <= MAX_CONNECTIONS, f"{overlay}: {total} connections against {MAX_CONNECTIONS}:\n{detail}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pgbouncers_clients_fit_and_exports_leave_verify_room(rendered, overlay):
    docs = rendered[overlay]
    bouncer = pgbouncer(docs)
    through = [w for w in workloads(docs) if w.route == "pgbouncer"]
    if bouncer is None:
        assert not through
        return
    # The Service may send every client to one PgBouncer pod.
    clients = sum(w.pods * w.connections for w in through)
    assert clients <= bouncer.max_client_conn, f"{clients} clients against max_client_conn {bouncer.max_client_conn}"
    keys = [w for w in through if w.name == "keyward-keys"]
    if keys:
        values, _ = environment(
            docs, one(docs, "Deployment", "keyward-keys")["spec"]["template"]["spec"]["containers"][0]
        )
        exports = keys[0].pods * int(setting(values, KeysSettings, "exports_per_replica"))
        admin_entries = [n for n in bouncer.entries if n != VERIFY_ENTRY]
        servers = bouncer.pods * min(bouncer.entries[n] for n in admin_entries)
        assert exports * 2 <= servers, (
            f"{exports} exports at once could hold more than half of PgBouncer's {servers} server connections"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_verify_runs_on_pods_of_its_own_and_the_keys_service_without_it(rendered, overlay):
    """keyward-keys-verify answers verify (SERVES=verify) on verify's pool only; keyward-keys everything else."""
    docs = rendered[overlay]
    for name, serves in (("keyward-keys-verify", "verify"), ("keyward-keys", "admin")):
        (main,) = one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        values, _ = environment(docs, main)
        assert values.get("SERVES") == serves, f"{overlay}: {name} SERVES={values.get('SERVES')}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_verify_has_pgbouncer_server_connections_of_its_own(rendered, overlay):
    """Through PgBouncer, verify's pool goes to an entry that administrators' work never uses."""
    docs = rendered[overlay]
    if not any(w.name == "keyward-keys-verify" and w.route == "pgbouncer" for w in workloads(docs)):
        return
    bouncer = pgbouncer(docs)
    assert bouncer is not None
    assert bouncer.entries.get(VERIFY_ENTRY, 0) >= 1, f"{overlay}: no {VERIFY_ENTRY} entry in databases.ini"
    (main,) = one(docs, "Deployment", "keyward-keys-verify")["spec"]["template"]["spec"]["containers"]
    _, secret_refs = environment(docs, main)
    assert secret_refs.get("VERIFY_DATABASE_URL") == ("keyward-keys-verify", "VERIFY_DATABASE_URL", False), (
        f"{overlay}: verify's pool is not given its own address (VERIFY_DATABASE_URL)"
    )


def test_the_relay_and_the_migrations_keep_their_sessions_on_direct_connections(rendered):
    """The relay's advisory lock and LISTEN, and the migrations' lock, need a session: never PgBouncer's."""
    for overlay in OVERLAYS:
        routes = {w.name: w.route for w in workloads(rendered[overlay])}
        assert routes["keyward-keys-relay"] == "direct", overlay
