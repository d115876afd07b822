"""SIGTERM, as a pod gets it on a rollout, under load: the process exits 0, every answered request stands
with its event, no response is cut off, and consumers commit only what they handled, so nothing is lost."""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local import kafka_access
from services.keys.config import Settings
from shared.auth import parse_service_tokens, sign_acting_admin
from shared.events import CloudEvent, KeyCreated, KeyDeleted, encode
from shared.kafka import idempotent_producer
from tests.fixtures.directory import Tenant
from tests.fixtures.events import detached_key_fields
from tests.fixtures.processes import ServiceProcess
from tests.integration.conftest import World, service_env

CREATED = "io.keyward.apikey.created.v1"


def assert_stopped_cleanly(process: ServiceProcess, exit_code: int) -> None:
    """Exit 0 (shared.serve keeps uvicorn's re-raised SIGTERM from turning a clean stop into 143)."""
    log = process.log_tail(2000)
    assert exit_code == 0, f"exit {exit_code}: {log}"
    assert "Application shutdown complete" in log, f"the lifespan did not finish its shutdown: {log}"
    assert "Traceback" not in log, log


async def test_sigterm_under_concurrent_creates_loses_no_answered_key_and_cuts_no_response(
    settings: Settings, pool: asyncpg.Pool, world: World, tenant: Tenant
):
    keys = await ServiceProcess("keys", service_env(settings)).start()
    prefix = f"sigterm-{uuid4().hex[:8]}"
    token = parse_service_tokens(settings.service_tokens)["gateway"]
    answered: list[tuple[float, str]] = []  # (when, key id) of every 201
    refused: list[tuple[float, str]] = []  # no response at all (connection refused or closed before any byte)
    cut: list[str] = []  # a response started and did not finish
    other: list[str] = []
    sigterm_at = float("inf")
    stop_firing = asyncio.Event()
    loaded = asyncio.Event()  # enough keys created to be under load

    async def worker(n: int) -> None:
        async with httpx.AsyncClient(base_url=keys.url, timeout=10) as client:
            i = 0
            while not stop_firing.is_set():
                i += 1
                headers = {
                    "Authorization": f"Bearer {token}",
                    "X-Acting-Admin": sign_acting_admin(
                        world.system_admin,
                        secret=settings.acting_admin_secret,
                        issuer="gateway",
                        audience="keys",
                        method="POST",
                        path="/v1/keys",
                    ),
                }
                body = {"name": f"{prefix}-{n}-{i}", "organization_id": str(tenant.orgs["org-1"])}
                try:
                    async with client.stream("POST", "/v1/keys", json=body, headers=headers) as response:
                        try:
                            await response.aread()
                        except httpx.HTTPError as exc:
                            cut.append(f"{body['name']}: {exc!r}")
                            continue
                except httpx.HTTPError as exc:
                    refused.append((time.monotonic(), repr(exc)))
                    await asyncio.sleep(0.05)
                    continue
                if response.status_code == 201:
                    answered.append((time.monotonic(), response.json()["id"]))
                    if len(answered) >= 60:
                        loaded.set()
                else:
                    other.append(f"{response.status_code}: {response.text[:200]}")

    workers = [asyncio.create_task(worker(n)) for n in range(12)]
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loaded.wait(), 20)
        assert len(answered) >= 60, f"load did not start: {other[:3]} {keys.log_tail()}"
        sigterm_at = time.monotonic()
        stopping = asyncio.create_task(keys.stop(timeout=40))
        await asyncio.sleep(2.0)  # keep firing while it drains and after it stopped listening
        exit_code = await stopping
    finally:
        stop_firing.set()
        await asyncio.gather(*workers)
        await keys.stop()

    assert_stopped_cleanly(keys, exit_code)
    assert not cut, f"responses cut off mid-way: {cut[:3]}"
    assert not other, other[:3]
    assert all(at >= sigterm_at for at, _ in refused), "a request was refused before shutdown began"
    assert refused, "the load never saw the service go away"
    drained = [key for at, key in answered if at >= sigterm_at]
    assert drained, "no request in flight at SIGTERM was answered: nothing was drained"

    ids = [UUID(key) for _, key in answered]
    rows = await pool.fetch(
        """
        SELECT k.id, (SELECT count(*) FROM keys.outbox o
                      WHERE o.headers @> jsonb_build_array(jsonb_build_array('ce_subject', k.id::text))
                        AND o.headers @> jsonb_build_array(jsonb_build_array('ce_type', $2::text))) AS events
        FROM keys.api_keys k WHERE k.name LIKE $1 || '-%'
        """,
        prefix,
        CREATED,
    )
    stored = {r["id"]: r["events"] for r in rows}
    assert set(ids) <= set(stored), f"{len(set(ids) - set(stored))} answered key(s) missing"
    assert all(n == 1 for n in stored.values()), "a key without its created event, or with two"
    # A request that got no answer either happened entirely or not at all.
    assert len(stored) - len(ids) <= len(refused)


def deleted_event(_: int) -> CloudEvent:
    now = datetime.now(UTC)
    return CloudEvent.of(
        KeyDeleted(
            key_id=uuid4(),
            name="shutdown test",
            organization_id=uuid4(),
            tenant_id=uuid4(),
            created_by="deploy-test",
            created_at=now - timedelta(days=1),
            expires_at=now + timedelta(days=364),
            key_display="kwk_test...0000",
            reason="manual",
            deleted_by="deploy-test",
        )
    )


def created_event(_: int) -> CloudEvent:
    return CloudEvent.of(KeyCreated(**detached_key_fields(name="shutdown test", created_by="deploy-test")))


async def notifier_handled(pool: asyncpg.Pool, events: list[CloudEvent]) -> set[str]:
    # A deletion leaves a tombstone (and, needing none, no row in processed_events).
    by_key = {e.data.key_id: e.id for e in events}
    rows = await pool.fetch("SELECT key_id FROM notifier.deleted_keys WHERE key_id = ANY($1)", list(by_key))
    return {by_key[r["key_id"]] for r in rows}


async def reaper_handled(pool: asyncpg.Pool, events: list[CloudEvent]) -> set[str]:
    by_key = {e.data.key_id: e.id for e in events}
    rows = await pool.fetch("SELECT key_id FROM reaper.schedule WHERE key_id = ANY($1)", list(by_key))
    return {by_key[r["key_id"]] for r in rows}


# Per consumer: its events, how to see which were handled, its group setting, and enough events that
# SIGTERM always lands mid-stream, however fast it consumes (the notifier handles a fetch of deletions in
# one transaction).
CONSUMERS: dict[str, tuple[Callable[[int], CloudEvent], Callable[..., Awaitable[set[str]]], str, int]] = {
    "notifier": (deleted_event, notifier_handled, "NOTIFIER_CONSUMER_GROUP", 20_000),
    "reaper": (created_event, reaper_handled, "REAPER_CONSUMER_GROUP", 2_000),
}


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(**kafka_access.access().options())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, what: str, process: ServiceProcess) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what} after {timeout}s: {process.log_tail()}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("service", list(CONSUMERS))
async def test_sigterm_while_consuming_commits_only_handled_events_and_a_restart_loses_none(
    settings: Settings, pool: asyncpg.Pool, keys_server: ServiceProcess, service: str
):
    make_event, handled, group_setting, count = CONSUMERS[service]
    bootstrap = settings.kafka_bootstrap_servers
    topic = f"apikeys.lifecycle.test-shutdown-{uuid4().hex[:10]}"
    await kafka_access.create_topics({topic: 3, f"{topic}.dlq": 1})
    events = [make_event(n) for n in range(count)]
    producer = idempotent_producer(kafka_access.access(), "deploy-shutdown-test")
    await producer.start()
    try:
        deliveries = []
        for event in events:
            key, value, headers = encode(event)
            deliveries.append(await producer.send(topic, value=value, key=key, headers=headers))
        placed = [(m.partition, m.offset) for m in await asyncio.gather(*deliveries)]
    finally:
        await producer.stop()
    group = f"{service}-shutdown-{uuid4().hex[:8]}"  # a group the service's principal may use
    env = service_env(settings) | {"KAFKA_TOPIC": topic, group_setting: group, "KEYS_URL": keys_server.url}

    first = await ServiceProcess(service, env).start()
    try:
        await wait_for(lambda: _at_least(pool, handled, events, 30), 30, "fewer than 30 events handled", first)
    finally:
        exit_code = await first.stop(timeout=40)
    assert_stopped_cleanly(first, exit_code)
    done = await handled(pool, events)
    print(f"{service}: {len(done)} of {len(events)} events handled when SIGTERM landed")
    assert len(done) < len(events), "everything was consumed before SIGTERM: the test proved nothing"
    committed = await committed_offsets(bootstrap, group, topic)
    assert sum(committed.values()) > 0, "nothing committed"
    for event, (partition, offset) in zip(events, placed, strict=True):
        if offset < committed.get(partition, 0):
            assert event.id in done, f"offset {partition}/{offset} committed but its event was not handled"

    second = await ServiceProcess(service, env).start()
    try:
        await wait_for(lambda: _at_least(pool, handled, events, len(events)), 60, "events lost", second)
    finally:
        assert_stopped_cleanly(second, await second.stop(timeout=40))
    ends = {p: max(o for q, o in placed if q == p) + 1 for p, _ in placed}
    assert await committed_offsets(bootstrap, group, topic) == ends


async def _at_least(
    pool: asyncpg.Pool, handled: Callable[..., Awaitable[set[str]]], events: list[CloudEvent], n: int
) -> bool:
    return len(await handled(pool, events)) >= n
