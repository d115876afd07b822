"""The services through PgBouncer in transaction pooling, as Kubernetes runs them (docs/operations.md, "Database
connections"): the keys service (verify, the list, the export's cursor) and the notifier reach PostgreSQL through
the local PgBouncer (deploy/local/pgbouncer.sh, which `make stack-up` starts), the relay directly.

Debian bookworm's PgBouncer 1.18 keeps no prepared statement from one transaction to the next: what these
processes do here would fail at once with asyncpg's statement cache on.
"""

import asyncio
import csv
import io
import os
import subprocess
from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from deploy.local import kafka_access, runenv
from services.keys.config import Settings
from shared.db import create_pool
from shared.kafka import idempotent_producer
from shared.migrate import scratch_database
from tests.fixtures.directory import create_org, create_tenant
from tests.fixtures.events import Publisher, expiring, key_fields
from tests.fixtures.keys import Caller, create_key
from tests.fixtures.mail import Sink
from tests.fixtures.notifier import Notifier, wait_for_notices
from tests.fixtures.processes import ServiceProcess

PORT = os.environ.get("KEYWARD_PGBOUNCER_PORT", "56432")
THROUGH_PGBOUNCER = {"KEYWARD_PGBOUNCER": "1", "KEYWARD_PGBOUNCER_PORT": PORT}


def pgbouncer_clients(database: str) -> set[str]:
    """The logins connected to `database` through PgBouncer now (its admin console's SHOW CLIENTS)."""
    owner = httpx.URL(os.environ["DATABASE_URL"])
    out = subprocess.run(
        ["psql", "-X", "-A", "-t", "-F", "|", "-h", "127.0.0.1", "-p", PORT, "-U", owner.username, "pgbouncer"],
        input="SHOW CLIENTS;",
        capture_output=True,
        text=True,
        timeout=10,
        env={**os.environ, "PGPASSWORD": owner.password or ""},
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split("|") for line in out.stdout.splitlines() if line]
    return {row[1] for row in rows if len(row) > 2 and row[2] == database}


@pytest.fixture(scope="module")
async def pgb_database_url() -> AsyncIterator[str]:
    async with scratch_database(os.environ["DATABASE_URL"], "kw_test_pgbouncer") as url:
        yield url


@pytest.fixture(scope="module")
async def pgb_topic() -> str:
    name = f"apikeys.lifecycle.test-pgbouncer-{uuid4().hex[:10]}"
    await kafka_access.create_topics({name: 3, f"{name}.dlq": 1})
    return name


@pytest.fixture(scope="module")
async def owner_pool(pgb_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(pgb_database_url, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def services(pgb_database_url: str, pgb_topic: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    """keys (RUN_RELAY=false) through PgBouncer, its relay direct; a notifier through PgBouncer."""
    env = {"DATABASE_URL": pgb_database_url, "KAFKA_TOPIC": pgb_topic, **THROUGH_PGBOUNCER}
    sink = Sink()
    sink.start()
    started: list[ServiceProcess] = []
    try:
        keys = await ServiceProcess("keys", env | {"RUN_RELAY": "false", "USAGE_FLUSH_INTERVAL": "1s"}).start()
        started.append(keys)
        relay = ServiceProcess("keys", env, command="relay", port_variable="RELAY_PORT")
        started.append(await relay.start())
        notifier = Notifier(
            env
            | {
                "KEYS_URL": keys.url,
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(sink.port),
                "NOTIFIER_CONSUMER_GROUP": f"notifier-pgbouncer-{uuid4().hex[:8]}",
                "SENDER_POLL_INTERVAL": "1s",
            }
        )
        started.append(await notifier.process.start())
        # The reaper asks for synchronous_commit=off at connect, which PgBouncer's sessions do not keep (its login does).
        reaper = await ServiceProcess("reaper", env | {"KEYS_URL": keys.url}).start()
        started.append(reaper)
        yield {"keys": keys, "relay": relay, "notifier": notifier.process, "reaper": reaper, "sink": sink}  # type: ignore[dict-item]
    finally:
        for process in reversed(started):
            await process.stop()
        sink.stop()


def test_the_local_stack_routes_every_pool_but_the_relays_through_pgbouncer():
    environ = {"KEYWARD_PGBOUNCER": "1", **{k: v for k, v in os.environ.items() if k.endswith("DATABASE_URL")}}
    for service in ("notifier", "reaper", "gateway"):
        assert f":{PORT}/" in runenv.service_environment(service, environ)["DATABASE_URL"]
    assert f":{PORT}/" not in runenv.service_environment("keys-relay", environ)["DATABASE_URL"]
    # The keys service relays itself unless told not to: its lock and LISTEN need a session of their own.
    assert f":{PORT}/" not in runenv.service_environment("keys", environ)["DATABASE_URL"]
    through = runenv.service_environment("keys", environ | {"RUN_RELAY": "false"})["DATABASE_URL"]
    assert through.endswith(f":{PORT}/keyward?pgbouncer=transaction")


async def test_keys_verify_and_the_notifier_work_through_pgbouncer(
    services, settings: Settings, owner_pool: asyncpg.Pool, pgb_database_url: str, pgb_topic: str
):
    keys, notifier, sink = services["keys"], services["notifier"], services["sink"]
    async with owner_pool.acquire() as conn:
        root = await create_org(conn, None, "Keyward")
        tenant = await create_tenant(conn, root["id"], admins=1)
    async with httpx.AsyncClient(base_url=keys.url, timeout=10) as http:
        admin = Caller.gateway(http, settings, tenant.admins[0])
        created = [await create_key(admin, tenant.orgs["org-1"]) for _ in range(5)]
        voice = {"Authorization": f"Bearer {os.environ['SERVICE_TOKENS'].split('voice:')[1].split(',')[0]}"}

        async def verify(key: str) -> bool:
            response = await http.post("/v1/keys/verify", json={"key": key}, headers=voice)
            assert response.status_code == 200, response.text
            return bool(response.json()["valid"])

        # Many at once: statements of one pooled connection reach different server connections.
        assert all(await asyncio.gather(*(verify(k["key"]) for k in created * 40)))
        listed = await admin.get("/v1/keys", params={"organization_id": str(tenant.orgs["org-1"])})
        assert listed.status_code == 200 and listed.json()["total"] == 5
        for _ in range(3):  # the export's cursor: a named statement inside a repeatable-read transaction
            export = await admin.get("/v1/keys/export.csv", params={"organization_id": str(tenant.id)})
            assert export.status_code == 200, export.text
            rows = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
            assert sorted(r["key"] for r in rows) == sorted(k["key"] for k in created)

    # The notifier: an expiring event becomes a notice and an e-mail, every statement through PgBouncer.
    fields = {**key_fields(tenant), "key_id": created[0]["id"]}
    row = await owner_pool.fetchrow(
        "SELECT name, created_at, expires_at, key_display FROM keys.api_keys WHERE id = $1", fields["key_id"]
    )
    fields |= {
        "name": row["name"],
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "key_display": row["key_display"],
    }
    producer: AIOKafkaProducer = idempotent_producer(kafka_access.access(), "pgbouncer-tests")
    await producer.start()
    try:
        await Publisher(producer, pgb_topic).event(expiring(fields, 30))
    finally:
        await producer.stop()
    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) == 1)
    token = os.environ["NOTIFIER_TOKEN"]
    async with httpx.AsyncClient(base_url=notifier.url, headers={"Authorization": f"Bearer {token}"}) as api:
        await wait_for_notices(api, fields["key_id"], lambda items: [i["status"] for i in items] == ["sent"])

    async with httpx.AsyncClient(base_url=services["reaper"].url) as reaper:
        ready = await reaper.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok", ready.text
    database = httpx.URL(pgb_database_url).path.strip("/")
    assert {"keyward_keys", "keyward_notifier", "keyward_reaper"} <= pgbouncer_clients(database)
