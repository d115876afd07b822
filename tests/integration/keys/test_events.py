"""The event stream as an independent consumer sees it: each event valid against its schema, once."""

import asyncio
import json
from collections import Counter
from uuid import uuid4

from aiokafka import AIOKafkaConsumer

from deploy.local import kafka_access
from services.keys import expiry
from services.keys.outbox import repository as outbox
from services.keys.outbox.relay import BATCH, RELAY_LOCK, OutboxRelay
from shared.events import CloudEvent, KeyCreated
from tests.fixtures.directory import Tenant
from tests.fixtures.events import detached_key_fields
from tests.fixtures.keys import create_key
from tests.fixtures.waiting import eventually, stays_true

DAY = 86400


def types_of(log, key_id):
    return [e.type.split(".")[3] for e in log.about(key_id)]


async def test_create_rename_and_delete_each_publish_one_cloudevent(as_admin, tenant: Tenant, event_log):
    admin = as_admin(tenant.admins[0])
    key = await create_key(admin, tenant.orgs["org-1"], "Events")
    await admin.patch(f"/v1/keys/{key['id']}", json={"name": "Events renamed"})
    await admin.delete(f"/v1/keys/{key['id']}")
    await event_log.wait_for(lambda _: len(event_log.about(key["id"])) >= 3)
    events = event_log.about(key["id"])
    assert types_of(event_log, key["id"]) == ["created", "updated", "deleted"]
    created, updated, deleted = events
    assert created.data.name == "Events" and created.data.created_by == tenant.admins[0]
    assert updated.data.previous_name == "Events" and updated.data.name == "Events renamed"
    assert deleted.data.reason == "manual" and deleted.data.deleted_by == tenant.admins[0]
    assert {e.subject for e in events} == {key["id"]} and {e.partition_key for e in events} == {str(tenant.id)}
    assert {e.source for e in events} == {"/keyward/keys"} and len({e.id for e in events}) == 3


async def test_no_event_carries_the_key_or_its_digest(as_admin, tenant: Tenant, event_log, pool):
    key = await create_key(as_admin(tenant.admins[0]), tenant.id)
    await event_log.wait_for(lambda _: event_log.about(key["id"]))
    digest = await pool.fetchval("SELECT digest FROM keys.api_keys WHERE id = $1", key["id"])
    random_part = key["key"][8:-4]  # what key_display does not show
    for raw, event in zip(event_log.raw, event_log.events, strict=True):
        if event.subject == key["id"]:
            text = json.dumps(event.data.model_dump(mode="json")) + repr(raw["headers"])
            assert random_part not in text and digest.hex() not in text


async def test_bulk_delete_publishes_one_event_per_key_with_reason_bulk(as_admin, tenant: Tenant, event_log):
    admin = as_admin(tenant.admins[0])
    keys = [await create_key(admin, tenant.id) for _ in range(3)]
    await admin.post("/v1/keys/bulk-delete", json={"ids": [k["id"] for k in keys]})
    await event_log.wait_for(lambda _: all(len(event_log.about(k["id"])) == 2 for k in keys))
    assert {event_log.about(k["id"])[1].data.reason for k in keys} == {"bulk"}


async def expire_in(pool, key_id, seconds):
    await pool.execute(
        "UPDATE keys.api_keys SET expires_at = now() + make_interval(secs => $2) WHERE id = $1", key_id, seconds
    )


def expiring(log, key_id):
    return [e.data for e in log.about(key_id) if e.type.endswith("expiring.v1")]


async def test_after_downtime_only_the_most_imminent_threshold_is_announced_once(
    as_admin, tenant: Tenant, event_log, pool
):
    key = await create_key(as_admin(tenant.admins[0]), tenant.id)
    await expire_in(pool, key["id"], 10 * DAY)  # 30d and 14d both crossed while "nobody watched"
    await event_log.wait_for(lambda _: expiring(event_log, key["id"]))
    await expire_in(pool, key["id"], 2 * DAY)  # 7d and 3d crossed
    await event_log.wait_for(lambda _: len(expiring(event_log, key["id"])) >= 2)
    await stays_true(lambda: len(expiring(event_log, key["id"])) == 2, for_seconds=2.5)  # two more watcher passes
    notices = expiring(event_log, key["id"])
    assert [(n.threshold_seconds, n.days_left) for n in notices] == [(14 * DAY, 10), (3 * DAY, 2)]
    # What the e-mail shows, from the tenant down (the system root left out).
    assert {tuple(n.organization_names or ()) for n in notices} == {(tenant.name,)}


async def test_several_watchers_announce_each_key_once_per_threshold(
    as_admin, tenant: Tenant, event_log, pool, settings
):
    admin = as_admin(tenant.admins[0])
    keys = [await create_key(admin, tenant.id) for _ in range(60)]
    ids = [k["id"] for k in keys]
    await pool.execute(
        "UPDATE keys.api_keys SET expires_at = now() + interval '5 days' WHERE id = ANY($1::uuid[])", ids
    )
    thresholds = [int(t.total_seconds()) for t in settings.expiry_notice_thresholds]
    # The app's own watcher runs too: four at once.
    await asyncio.gather(*[expiry.announce_once(pool, thresholds, settings.kafka_topic) for _ in range(3)])

    def announced() -> Counter[str]:
        return Counter(str(e.subject) for e in event_log.events if e.type.endswith("expiring.v1") and e.subject in ids)

    await event_log.wait_for(lambda _: all(expiring(event_log, i) for i in ids))
    await stays_true(lambda: set(announced().values()) == {1}, for_seconds=1.5)
    assert len(announced()) == len(ids)
    assert {expiring(event_log, i)[0].threshold_seconds for i in ids} == {7 * DAY}


async def test_standby_relays_publish_nothing_twice_and_take_over_when_the_leader_dies(
    as_admin, tenant: Tenant, event_log, pool, settings
):
    relays = [
        OutboxRelay(
            pool,
            settings.database_url,
            settings.kafka,
            client_id=f"test-relay-{i}",
            retention_seconds=3600,
        )
        for i in range(2)
    ]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        admin = as_admin(tenant.admins[0])
        first = [await create_key(admin, tenant.id) for _ in range(20)]
        await event_log.wait_for(lambda _: all(event_log.about(k["id"]) for k in first))
        # Kill whichever replica holds the relay lock; one of the others must carry on.
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            RELAY_LOCK,
        )
        assert killed == 1
        second = [await create_key(admin, tenant.id) for _ in range(20)]
        await event_log.wait_for(lambda _: all(event_log.about(k["id"]) for k in second), timeout=30)
        for k in first + second:
            assert types_of(event_log, k["id"]) == ["created"]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for r in relays:
            await r.close()


async def test_a_lone_relay_whose_lock_connection_is_killed_relays_again_within_seconds(
    as_admin, tenant: Tenant, event_log, pool
):
    """The app's own relay, alone: it must notice its dead connection at once, not at the 30 s safety wake."""
    admin = as_admin(tenant.admins[0])
    before = await create_key(admin, tenant.id)
    await event_log.wait_for(lambda _: event_log.about(before["id"]))
    killed = await pool.fetch(
        "SELECT pid, pg_terminate_backend(pid) AS terminated FROM pg_locks WHERE locktype = 'advisory'"
        " AND objid = $1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        RELAY_LOCK,
    )
    assert [r["terminated"] for r in killed] == [True]

    async def lock_connection_gone() -> bool:
        return not await pool.fetchval("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", killed[0]["pid"])

    await eventually(lock_connection_gone, timeout=5)
    after = await create_key(admin, tenant.id)
    await event_log.wait_for(lambda _: event_log.about(after["id"]), timeout=8)


async def test_a_backlog_of_several_batches_is_published_once_in_order_and_marked_sent(pool, settings):
    """The relay reads a batch while Kafka acknowledges the one before: none may be read twice or overtake."""
    topic = f"apikeys.lifecycle.test-relay-{uuid4().hex[:10]}"
    await kafka_access.create_topics({topic: 3})
    events = [CloudEvent.of(KeyCreated(**detached_key_fields())) for _ in range(BATCH * 5 // 2)]
    async with pool.acquire() as conn, conn.transaction():
        await outbox.add_events(conn, topic, events)
    relay = OutboxRelay(
        pool,
        settings.database_url,
        settings.kafka,
        client_id="test-relay-order",
        retention_seconds=60,
    )
    task = asyncio.create_task(relay.run())
    consumer = AIOKafkaConsumer(topic, **kafka_access.access().options(), auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    received: dict[int, list[str]] = {}

    async def no_more_than_sent(timeout_ms: int = 100) -> bool:
        for tp, messages in (await consumer.getmany(timeout_ms=timeout_ms)).items():
            received.setdefault(tp.partition, []).extend(dict(m.headers)["ce_id"].decode() for m in messages)
        return sum(map(len, received.values())) <= len(events)

    try:
        async with asyncio.timeout(60):
            while sum(map(len, received.values())) < len(events):
                await no_more_than_sent(timeout_ms=500)
        await stays_true(no_more_than_sent, for_seconds=1)  # a duplicate would arrive meanwhile
        unsent = await pool.fetchval("SELECT count(*) FROM keys.outbox WHERE topic = $1 AND sent_at IS NULL", topic)
    finally:
        await consumer.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await relay.close()
    order = {e.id: n for n, e in enumerate(events)}
    published = [ce_id for ids in received.values() for ce_id in ids]
    assert sorted(published, key=order.__getitem__) == [e.id for e in events], "each event once"
    for ids in received.values():
        assert ids == sorted(ids, key=order.__getitem__), "a partition keeps the outbox's order"
    assert unsent == 0
