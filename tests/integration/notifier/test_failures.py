"""SMTP outages, refused recipients and messages that cannot be handled."""

import asyncio

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer

from deploy.local import kafka_access
from shared.events import CloudEvent, KeyExpiring
from tests.fixtures.events import Publisher, expiring, key_fields
from tests.fixtures.mail import Sink, email_of
from tests.fixtures.notifier import wait_for_notices
from tests.fixtures.processes import ServiceProcess
from tests.fixtures.waiting import stays_true


async def test_every_email_arrives_once_the_smtp_server_is_back(
    publish: Publisher, sink: Sink, make_tenant, make_key, notices_api: httpx.AsyncClient
):
    tenant = await make_tenant(admins=3)
    fields = await make_key(tenant, days=14)
    sink.stop()
    await publish.event(expiring(fields, 14))
    # Retried with backoff meanwhile (1s, then 2s at most in this world), each attempt recorded.
    items = await wait_for_notices(
        notices_api, fields["key_id"], lambda items: len(items) == 3 and all(i["attempts"] >= 2 for i in items)
    )
    assert {i["status"] for i in items} <= {"pending", "sending"}
    assert all(i["last_error"] for i in items)

    sink.start()
    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) == 3)
    items = await wait_for_notices(
        notices_api, fields["key_id"], lambda items: all(i["status"] == "sent" for i in items)
    )
    for admin in tenant.admins:
        assert len(sink.to(email_of(admin), fields["key_id"])) == 1


async def test_a_recipient_refused_for_good_is_recorded_as_failed_and_not_retried(
    publish: Publisher, sink: Sink, make_tenant, make_key, notices_api: httpx.AsyncClient
):
    tenant = await make_tenant(admins=3)
    refused = email_of(tenant.admins[1])
    sink.handler.refuse[refused] = "550 5.1.1 No such user here"
    fields = await make_key(tenant, days=3)
    await publish.event(expiring(fields, 3))
    items = await wait_for_notices(
        notices_api,
        fields["key_id"],
        lambda items: len(items) == 3 and all(i["status"] in ("sent", "failed") for i in items),
    )
    (failed,) = [i for i in items if i["status"] == "failed"]
    assert failed["recipient"] == refused
    assert "550" in failed["last_error"]
    assert failed["attempts"] == 1
    # Longer than NOTICE_RETRY_MAX in this world: a retry would happen within it.
    await stays_true(lambda: sink.handler.rcpts.count(refused) == 1, for_seconds=2.5)
    assert len(sink.about(fields["key_id"])) == 2


async def test_a_recipient_refused_for_now_is_retried_until_accepted(
    publish: Publisher, sink: Sink, make_tenant, make_key, notices_api: httpx.AsyncClient
):
    tenant = await make_tenant(admins=2)
    busy = email_of(tenant.admins[0])
    sink.handler.refuse[busy] = "452 4.2.2 Mailbox full, try later"
    fields = await make_key(tenant, days=3)
    await publish.event(expiring(fields, 3))
    await sink.wait_for(lambda: len(sink.to(email_of(tenant.admins[1]), fields["key_id"])) == 1)
    await wait_for_notices(notices_api, fields["key_id"], lambda items: any(i["attempts"] >= 2 for i in items))
    del sink.handler.refuse[busy]
    await sink.wait_for(lambda: len(sink.to(busy, fields["key_id"])) == 1)


async def test_a_poison_message_goes_to_the_dead_letter_topic_and_consumption_goes_on(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_topic: str
):
    tenant = await make_tenant(admins=1)
    unreadable = key_fields(tenant)
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"poison-1"),
        ("ce_type", KeyExpiring.type.encode()),
        ("ce_source", b"/keyward/keys"),
        ("ce_subject", str(unreadable["key_id"]).encode()),
        ("ce_time", b"2030-01-01T00:00:00Z"),
        ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ]
    await publish.raw(str(tenant.id).encode(), b"{not json", headers)
    # Decodes, and its key is known, but PostgreSQL cannot store its threshold: the handler can never succeed.
    unstorable = await make_key(tenant)
    unstorable_event = await publish.event(
        CloudEvent.of(KeyExpiring(**unstorable, threshold_seconds=2**64, days_left=30))
    )
    healthy = await make_key(tenant)
    await publish.event(expiring(healthy, 30))
    await sink.wait_for(lambda: len(sink.about(healthy["key_id"])) == 1)
    assert sink.about(unreadable["key_id"]) == sink.about(unstorable["key_id"]) == []

    dead = await read_dead_letters(f"{nf_topic}.dlq", {"poison-1", unstorable_event.id})
    assert dead["poison-1"]["traceparent"] == headers[-1][1]
    assert dead["poison-1"]["ce_type"] == KeyExpiring.type.encode()
    assert b"malformed" in dead["poison-1"]["dlq_error"]
    assert b"DataError" in dead[unstorable_event.id]["dlq_error"]


async def read_dead_letters(topic: str, ids: set[str], timeout: float = 20.0) -> dict[str, dict[str, bytes]]:
    consumer = AIOKafkaConsumer(topic, **kafka_access.access().options(), auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    found: dict[str, dict[str, bytes]] = {}
    try:
        async with asyncio.timeout(timeout):
            async for message in consumer:
                headers = dict(message.headers)
                ce_id = headers.get("ce_id", b"").decode()
                if ce_id in ids:
                    found[ce_id] = headers
                if set(found) == ids:
                    return found
    finally:
        await consumer.stop()
    return found


async def test_fanouts_one_after_another_share_smtp_connections_and_one_that_stopped_answering_is_not_used(
    publish: Publisher, sink: Sink, make_tenant, make_key, notices_api: httpx.AsyncClient
):
    # A tenant each: eight notices of one tenant falling due together would go out as one digest.
    first = [await make_key(await make_tenant(admins=2), days=3) for _ in range(8)]
    greetings = sink.handler.ehlos
    for fields in first:
        await publish.event(expiring(fields, 3))
    await sink.wait_for(lambda: sum(len(sink.about(f["key_id"])) for f in first) == 16)
    # Eight fan-outs on at most SENDER_CONCURRENCY (4) connections: the later ones reuse the earlier ones'.
    assert sink.handler.ehlos - greetings <= 4

    # The idle connections stop answering: the next fan-out notices before it sends, and loses no attempt.
    sink.mute_open_connections()
    later = await make_key(await make_tenant(admins=2), days=3)
    await publish.event(expiring(later, 3))
    await sink.wait_for(lambda: len(sink.about(later["key_id"])) == 2)
    items = await wait_for_notices(
        notices_api, later["key_id"], lambda items: all(i["status"] == "sent" for i in items)
    )
    assert [i["attempts"] for i in items] == [1, 1]


async def test_a_keys_service_outage_in_the_middle_of_a_fanout_holds_no_claim_and_loses_no_email(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_keys: ServiceProcess, nf_pool: asyncpg.Pool, notices_api
):
    tenant = await make_tenant(admins=12)
    fields = await make_key(tenant, days=7)
    # 0.3 s an e-mail: the fan-out outlives RECIPIENTS_CACHE_TTL (1 s) and asks the directory again midway.
    sink.handler.delay = 0.3
    await publish.event(expiring(fields, 7))
    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) >= 1)
    await nf_keys.stop()
    try:
        # The fan-out stops at its next look at the directory and gives back the delivery it had claimed
        # ahead: no delivery stays claimed (it would wait NOTICE_CLAIM_TIMEOUT and count a second attempt).
        statuses = "SELECT status, count(*) AS n FROM notifier.deliveries WHERE key_id = $1 GROUP BY status"
        loop = asyncio.get_running_loop()
        deadline, settled_since = loop.time() + 15, None
        while True:
            by_status = {r["status"]: r["n"] for r in await nf_pool.fetch(statuses, fields["key_id"])}
            if "sending" in by_status:
                settled_since = None
            elif settled_since is None:
                settled_since = loop.time()
            elif loop.time() - settled_since > 1.0:
                break
            assert loop.time() < deadline, f"a delivery stays claimed while the keys service is down: {by_status}"
            await asyncio.sleep(0.05)
        assert by_status.get("sent", 0) == len(sink.about(fields["key_id"])) < 12
    finally:
        await nf_keys.start()

    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) == 12)
    items = await wait_for_notices(
        notices_api, fields["key_id"], lambda items: all(i["status"] == "sent" for i in items)
    )
    assert [i["attempts"] for i in items] == [1] * 12
    for admin in tenant.admins:
        assert len(sink.to(email_of(admin), fields["key_id"])) == 1
