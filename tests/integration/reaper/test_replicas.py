"""Several reapers at once, and a reaper killed mid-run: every key deleted once, none left behind."""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from deploy.local import kafka_access
from services.keys.config import Settings
from shared.events import decode
from tests.fixtures.directory import Tenant
from tests.fixtures.keys import create_key
from tests.fixtures.processes import ServiceProcess, metric, service_env
from tests.fixtures.reaper import INTERVAL, SLACK, StartReaper, deletions, lateness, remaining, wait_until_gone
from tests.fixtures.waiting import eventually, stays_true

DELETED = "io.keyward.apikey.deleted.v1"


def deleted_per_key(events, ids: list[UUID]) -> Counter[str]:
    wanted = {str(i) for i in ids}
    return Counter(e.subject for e in events if e.type == DELETED and e.subject in wanted)


async def test_two_reapers_at_once_delete_each_key_once_within_the_interval(
    start_reaper: StartReaper, as_admin, tenant: Tenant, bulk_keys, pool: asyncpg.Pool, event_log
):
    reapers = await asyncio.gather(*(start_reaper(reaper_batch_size="100") for _ in range(2)))
    started = await pool.fetchval("SELECT now()")
    staggered = [UUID((await create_key(as_admin(tenant.admins[0]), tenant.orgs["org-1"]))["id"]) for _ in range(4)]
    for n, key_id in enumerate(staggered, start=1):
        await pool.execute(
            "UPDATE keys.api_keys SET expires_at = now() + interval '0.6 seconds' * $2 WHERE id = $1", key_id, n
        )
    # Both reapers wake for these at the same instant and contend for them, four batches of 100 at a time.
    crowd = await bulk_keys(1000, expires_in=1.5)
    ids = staggered + crowd
    await wait_until_gone(pool, ids, timeout=20)

    rows = await deletions(pool, ids)
    assert len(rows) == len(ids) and {r["key_id"] for r in rows} == set(ids)
    late = lateness(rows)
    print(f"two reapers: {len(ids)} keys deleted {min(late):.3f}..{max(late):.3f}s after expiry")
    assert all(0 <= s <= INTERVAL + SLACK for s in late), max(late)

    def one_deleted_event_each() -> bool:
        return set(deleted_per_key(event_log.events, ids).values()) == {1}

    await event_log.wait_for(lambda events: len(deleted_per_key(events, ids)) == len(ids), timeout=30)
    await stays_true(one_deleted_event_each, for_seconds=1)  # a duplicate would arrive meanwhile
    assert not event_log.errors
    counts = [await metric(r, "keyward_reaper_keys_reaped_total") for r in reapers]
    reaped_since = await pool.fetchval(
        "SELECT count(*) FROM keys.audit_log WHERE action = 'delete' AND actor = 'system' AND at >= $1", started
    )
    print(f"keys reaped by each reaper: {counts}")
    assert sum(counts) == reaped_since
    await asyncio.gather(*(r.stop() for r in reapers))


@pytest.fixture(scope="module")
async def quiet_keys(settings: Settings) -> AsyncIterator[ServiceProcess]:
    """A keys service writing to a topic of its own, so thousands of events stay out of the shared event log."""
    topic = f"apikeys.lifecycle.reaper-{uuid4().hex[:8]}"
    await kafka_access.create_topics({topic: 3})
    process = await ServiceProcess("keys", service_env(settings) | {"KAFKA_TOPIC": topic}).start()
    yield process
    await process.stop()


async def deleted_events_on(topic: str, ids: list[UUID], timeout: float) -> Counter[str]:
    """Reads `topic` from the start until every key of `ids` has a deleted event (or `timeout` passes)."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_access.access().options(),
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    seen: Counter[str] = Counter()
    wanted = {str(i) for i in ids}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    event = decode(m.key, m.value, list(m.headers))
                    if event.type == DELETED and event.subject in wanted:
                        seen[event.subject] += 1
            if len(seen) == len(wanted) and not (await consumer.getmany(timeout_ms=1000)):
                break
    finally:
        await consumer.stop()
    return seen


async def test_a_reaper_killed_mid_run_leaves_nothing_that_the_next_one_does_not_finish(
    start_reaper: StartReaper, quiet_keys: ServiceProcess, bulk_keys, pool: asyncpg.Pool
):
    topic = quiet_keys.env["KAFKA_TOPIC"]
    ids = await bulk_keys(5000)
    first = await start_reaper(
        keys_url=quiet_keys.url, kafka_topic=topic, reaper_batch_size="10", reaper_concurrency="1"
    )

    async def some_deleted() -> bool:
        return await remaining(pool, ids) <= 4900

    await eventually(some_deleted, timeout=30, every=0.01)
    first.kill()
    left = await remaining(pool, ids)
    assert 0 < left < 5000

    # Each batch is one transaction in the keys service: a key is either still there, or gone with its
    # audit row and its `deleted` event in the outbox. Read in one statement, so in one snapshot.
    query = """
        SELECT (SELECT count(*) FROM keys.api_keys WHERE id = ANY($1)),
               (SELECT count(*) FROM keys.audit_log WHERE action = 'delete' AND key_id = ANY($1)),
               (SELECT count(*) FROM keys.outbox WHERE headers @> $2::jsonb
                   AND (convert_from(payload, 'UTF8')::jsonb->>'key_id')::uuid = ANY($1))
    """
    present, audited, outboxed = await pool.fetchrow(query, ids, [["ce_type", DELETED]])
    assert present + audited == 5000 and audited == outboxed, (present, audited, outboxed)

    await start_reaper(keys_url=quiet_keys.url, kafka_topic=topic)
    await wait_until_gone(pool, ids, timeout=30)
    rows = await deletions(pool, ids)
    assert Counter(r["key_id"] for r in rows) == Counter(ids)
    assert await pool.fetchrow(query, ids, [["ce_type", DELETED]]) == (0, 5000, 5000)
    second = sorted(r["at"] for r in rows)[-left:]
    print(
        f"killed with {left} of 5000 keys left; the restarted reaper deleted them in "
        f"{(second[-1] - second[0]).total_seconds():.3f}s (first to last deletion)"
    )
    per_key = await deleted_events_on(topic, ids, timeout=30)
    assert len(per_key) == 5000 and set(per_key.values()) == {1}
