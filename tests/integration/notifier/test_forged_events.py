"""An `expiring` event is believed only as far as the keys service vouches for its key (issue 17, item 4):
anyone who can write to the topic could otherwise make the notifier e-mail a tenant's administrators."""

import asyncio

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from deploy.local import kafka_access
from tests.fixtures.events import Publisher, expiring, key_fields
from tests.fixtures.mail import Sink
from tests.fixtures.notifier import notices
from tests.fixtures.processes import ServiceProcess
from tests.fixtures.waiting import stays_true


async def dead_letters_of(topic: str, ce_id: str) -> int:
    """How many dead letters carry the event `ce_id`, reading the dead-letter topic (one partition) to its end."""
    consumer = AIOKafkaConsumer(**kafka_access.access().options(), group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        count = 0
        async with asyncio.timeout(20):
            while await consumer.position(tp) < end:
                for message in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    count += dict(message.headers).get("ce_id") == ce_id.encode()
        return count
    finally:
        await consumer.stop()


async def test_an_expiring_event_for_a_key_that_does_not_exist_sends_nothing_and_is_dead_lettered_once(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_topic: str, notices_api: httpx.AsyncClient
):
    tenant = await make_tenant(admins=2)
    forged = key_fields(tenant, name="Renew at evil.example", days=1)  # in no database
    forged_event = await publish.event(expiring(forged, 1))
    # Same tenant, same partition: handled after the forged event.
    sentinel = await make_key(tenant, days=1)
    await publish.event(expiring(sentinel, 1))
    await sink.wait_for(lambda: len(sink.about(sentinel["key_id"])) == 2)

    assert sink.about(forged["key_id"]) == []
    assert await notices(notices_api, forged["key_id"]) == []
    assert await dead_letters_of(f"{nf_topic}.dlq", forged_event.id) == 1


async def test_an_expiring_event_naming_another_tenant_for_a_key_sends_nothing_and_is_dead_lettered_once(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_topic: str, notices_api: httpx.AsyncClient
):
    victim, owner = await make_tenant(admins=2), await make_tenant(admins=1)
    real = await make_key(owner, days=1)
    # The owner's real key, presented as the victim's so that the victim's administrators are e-mailed.
    forged = real | {"tenant_id": victim.id, "organization_id": victim.orgs["org-1"]}
    forged_event = await publish.event(expiring(forged, 1))
    sentinel = await make_key(victim, days=1)
    await publish.event(expiring(sentinel, 1))
    await sink.wait_for(lambda: len(sink.about(sentinel["key_id"])) == 2)

    assert sink.about(real["key_id"]) == []
    assert await notices(notices_api, real["key_id"]) == []
    assert await dead_letters_of(f"{nf_topic}.dlq", forged_event.id) == 1


async def test_an_expiring_event_waits_while_the_keys_service_is_down_and_is_not_dead_lettered(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_topic: str, nf_keys: ServiceProcess
):
    tenant = await make_tenant(admins=1)
    fields = await make_key(tenant, days=1)
    await nf_keys.stop()
    try:
        event = await publish.event(expiring(fields, 1))
        # Tried again and again meanwhile (the consumer's backoff starts at 0.2 s): never believed unchecked.
        await stays_true(lambda: sink.about(fields["key_id"]) == [], for_seconds=3)
    finally:
        await nf_keys.start()
    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) == 1)
    assert await dead_letters_of(f"{nf_topic}.dlq", event.id) == 0
