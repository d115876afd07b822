"""Kafka clients configured the one way this project uses them."""

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2
from tenacity import AsyncRetrying, before_sleep_log, retry_if_not_exception_type, wait_exponential


class RememberingPartitioner:
    """aiokafka's default partitioner (murmur2 of the key, as Java's clients do), with each key's hash remembered.

    aiokafka's murmur2 is pure Python, a visible share of the relay's CPU in a burst of events. Message keys
    are tenant (or system-level organization) ids, a bounded set, so most are hashed once.
    """

    def __init__(self, size: int = 65536) -> None:
        self._hash = functools.lru_cache(maxsize=size)(murmur2)

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        return all_partitions[(self._hash(key) & 0x7FFFFFFF) % len(all_partitions)]


# A partition's batch, up to. aiokafka sends a node one batch per partition per request and waits for the
# answer: at its default (16 KiB) a burst of a thousand events took several round trips in turn, each a
# request for the broker and a fetch for every consumer. Below the broker's message.max.bytes (1 MiB).
MAX_BATCH_BYTES = 256 * 1024


def idempotent_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    """acks=all and idempotence: a retried send never writes a message twice or out of order."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        partitioner=RememberingPartitioner(),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=MAX_BATCH_BYTES,
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


async def reconnecting(connect: Callable[[], Awaitable[None]], log: logging.Logger) -> None:
    """Runs `connect` (a consumer's whole session) until cancelled: again after every failure, with
    exponential backoff up to 10 s, so that a broker outage only pauses it."""
    async for attempt in AsyncRetrying(
        wait=wait_exponential(multiplier=0.5, max=10),
        retry=retry_if_not_exception_type(asyncio.CancelledError),
        before_sleep=before_sleep_log(log, logging.WARNING),
    ):
        with attempt:
            await connect()
