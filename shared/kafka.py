"""Kafka clients configured the one way this project uses them."""

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import murmur2
from tenacity import AsyncRetrying, before_sleep_log, retry_if_not_exception_type, wait_exponential


@dataclass(frozen=True)
class KafkaAccess:
    """Where the brokers are and who this process is to them: every client of this project is made from one.

    Each service is a principal of its own (SASL/SCRAM), allowed by the brokers' ACLs only what it needs
    (docs/operations.md); TLS wherever the brokers are not on this machine's loopback.
    """

    bootstrap: str
    security_protocol: str = "SASL_SSL"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    mechanism: str = "SCRAM-SHA-512"
    ca_file: str | None = None

    def options(self) -> dict[str, Any]:
        """aiokafka's keyword arguments for a client, admin client, producer or consumer."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            options |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        if self.security_protocol.endswith("SSL"):
            options["ssl_context"] = create_ssl_context(cafile=self.ca_file)
        return options


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


def idempotent_producer(kafka: KafkaAccess, client_id: str) -> AIOKafkaProducer:
    """acks=all and idempotence: a retried send never writes a message twice or out of order."""
    return AIOKafkaProducer(
        **kafka.options(),
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


def manual_commit_consumer(kafka: KafkaAccess, group_id: str, *topics: str, client_id: str) -> AIOKafkaConsumer:
    """Offsets are committed by the caller, only after its own work is durable."""
    return AIOKafkaConsumer(
        *topics,
        **kafka.options(),
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )


async def ensure_topics(kafka: KafkaAccess, topics: dict[str, int]) -> None:
    """Creates missing topics (name -> partitions); for tests and local set-ups (as a principal allowed to)."""
    admin = AIOKafkaAdminClient(**kafka.options())
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
