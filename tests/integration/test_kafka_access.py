"""The local broker takes only signed-in clients, and each principal may do only its service's part
(deploy/local/kafka-access.txt): a compromised notifier cannot publish a lifecycle event."""

from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from deploy.local import kafka_access
from shared.kafka import KafkaAccess, idempotent_producer

LIFECYCLE = "apikeys.lifecycle"
# A principal that may write no topic at all is refused a producer id before it can name one.
REFUSED_WRITE = (TopicAuthorizationFailedError, ClusterAuthorizationFailedError)


async def produce(access: KafkaAccess, topic: str) -> None:
    producer = idempotent_producer(access, f"access-test-{uuid4().hex[:6]}")
    try:
        await producer.start()
        await producer.send_and_wait(topic, b"{}", key=b"forged")
    finally:
        await producer.stop()


async def consume_one(access: KafkaAccess, topic: str, group: str | None) -> None:
    consumer = AIOKafkaConsumer(
        topic, **access.options(), group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=3000)
        if group is not None:
            await consumer.commit()
    finally:
        await consumer.stop()


@pytest.mark.parametrize("principal", ["notifier", "reaper", "gateway", "platform"])
async def test_only_the_keys_service_may_write_the_lifecycle(principal: str, topic: str):
    for target in (LIFECYCLE, topic):
        with pytest.raises(REFUSED_WRITE):
            await produce(kafka_access.access(principal), target)
    await produce(kafka_access.access("keys"), topic)


async def test_the_notifier_and_the_reaper_may_write_the_dead_letter_topic_the_keys_service_may_not():
    topic = f"apikeys.lifecycle.test-access-{uuid4().hex[:8]}"
    await kafka_access.create_topics({topic: 1, f"{topic}.dlq": 1})
    for principal in ("notifier", "reaper"):
        await produce(kafka_access.access(principal), f"{topic}.dlq")
    for principal in ("keys", "gateway", "platform"):
        with pytest.raises(REFUSED_WRITE):
            await produce(kafka_access.access(principal), f"{topic}.dlq")


async def test_a_client_that_does_not_sign_in_is_refused(topic: str):
    plain = KafkaAccess(kafka_access.access().bootstrap, "PLAINTEXT")
    with pytest.raises(KafkaConnectionError):
        await produce(plain, topic)
    wrong = KafkaAccess(kafka_access.access().bootstrap, "SASL_PLAINTEXT", "notifier", "not-the-password")
    with pytest.raises(KafkaConnectionError):
        await consume_one(wrong, topic, None)


async def test_consumer_groups_are_each_services_own(topic: str):
    await consume_one(kafka_access.access("notifier"), topic, f"notifier-access-{uuid4().hex[:6]}")
    await consume_one(kafka_access.access("reaper"), topic, f"reaper-access-{uuid4().hex[:6]}")
    with pytest.raises(GroupAuthorizationFailedError):
        await consume_one(kafka_access.access("notifier"), topic, f"reaper-access-{uuid4().hex[:6]}")
    with pytest.raises(GroupAuthorizationFailedError):
        await consume_one(kafka_access.access("gateway"), topic, f"gateway-access-{uuid4().hex[:6]}")
    await consume_one(kafka_access.access("gateway"), topic, None)


async def test_other_platform_services_read_the_lifecycle_with_groups_of_their_own(topic: str):
    await consume_one(kafka_access.access("platform"), topic, f"billing-{uuid4().hex[:6]}")
    await consume_one(kafka_access.access("platform"), LIFECYCLE, f"audit-{uuid4().hex[:6]}")


async def test_a_principal_reads_only_the_lifecycle_topics_it_was_granted():
    ungranted = f"apikeys.lifecycle.test-ungranted-{uuid4().hex[:8]}"
    await kafka_access.ensure_topics(kafka_access.access(), {ungranted: 1})
    with pytest.raises(TopicAuthorizationFailedError):
        await consume_one(kafka_access.access("platform"), ungranted, None)
