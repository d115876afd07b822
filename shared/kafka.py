"""Kafka clients configured the one way this project uses them."""

import contextlib

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


def idempotent_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    """acks=all and idempotence: a retried send never writes a message twice or out of order."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=15000,
        retry_backoff_ms=200,
        metadata_max_age_ms=60000,
    )


def manual_commit_consumer(bootstrap: str, group_id: str, *topics: str, client_id: str) -> AIOKafkaConsumer:
    """Offsets are committed by the caller, only after its own work is durable."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )


async def ensure_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Creates missing topics (name -> partitions); for tests and local set-ups."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
