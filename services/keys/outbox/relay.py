"""The outbox relay: publishes committed events to Kafka, in order, and marks them sent once acknowledged.

One replica relays at a time (a session advisory lock on a dedicated connection); the others wait to take
over. Publishing is at-least-once: a crash between Kafka's acknowledgement and the UPDATE re-sends those
events, with the same `ce_id`, for consumers to drop.
"""

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder
from tenacity import AsyncRetrying, before_sleep_log, retry_if_exception_type, wait_exponential

from services.keys.metrics import (
    RELAY_FAILURES,
    RELAY_LAG,
    RELAY_LEADER,
    RELAY_PUBLISHED,
)
from services.keys.outbox import repository
from shared.kafka import KafkaAccess, RememberingPartitioner, idempotent_producer

log = logging.getLogger(__name__)

RELAY_LOCK = 0x6B77_7265  # "kwre"
CHANNEL = "keys_outbox"
# Events read a time; two batches overlap (one read and queued while Kafka acknowledges the other), and
# smaller batches overlap better (docs/benchmarks.md, "Figures behind the code").
BATCH = 1000
YIELD_EVERY = 50
# LISTEN/NOTIFY wakes the relay; this only bounds the wait if a notification is ever missed.
SAFETY_WAKE_SECONDS = 30.0


class OutboxRelay:
    def __init__(
        self, pool: asyncpg.Pool, dsn: str, kafka: KafkaAccess, *, client_id: str, retention_seconds: float
    ) -> None:
        self.pool = pool
        self.dsn = dsn
        self.kafka = kafka
        self.client_id = client_id
        self.retention_seconds = retention_seconds
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = RememberingPartitioner()

    async def run(self) -> None:
        """Runs until cancelled, surviving database and Kafka outages."""
        async for attempt in AsyncRetrying(
            wait=wait_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception_type(Exception),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        ):
            with attempt:
                try:
                    await self._lead()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    RELAY_FAILURES.inc()
                    await self._drop_producer()
                    raise

    async def _lead(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
        try:
            # Standby replicas ask again every second; the lock is held by a session, so no event can say "free".
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK):  # noqa: ASYNC110
                await asyncio.sleep(1.0)
            RELAY_LEADER.set(1)
            log.info("relay: this replica publishes the outbox")
            await conn.add_listener(CHANNEL, lambda *_: self._wake.set())
            # A lock connection that dies (a failover, or an operator's pg_terminate_backend) wakes the loop
            # at once: without this an idle leader noticed only at its next safety wake, up to 30 s later.
            conn.add_termination_listener(lambda _: self._wake.set())
            last_purge = 0.0
            while True:
                if conn.is_closed():
                    raise ConnectionError("lost the relay's lock connection")
                self._wake.clear()
                await self._publish_all(conn)
                now = asyncio.get_running_loop().time()
                if now - last_purge > 300:
                    async with self.pool.acquire() as c:
                        await repository.purge_sent(c, self.retention_seconds)
                    last_purge = now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), SAFETY_WAKE_SECONDS)
        finally:
            RELAY_LEADER.set(0)
            if not conn.is_closed():
                await conn.close(timeout=2)

    async def _publish_all(self, lock: asyncpg.Connection) -> None:
        """Publishes every unsent event, a batch at a time, and marks each batch sent once Kafka has it.

        While Kafka acknowledges one batch, the next is read and queued behind it, in order: waiting for the
        database and for Kafka in turn left the relay idle half the time. Stops at once if the lock's
        connection died: another replica may be relaying by now.
        """
        confirming: asyncio.Task[None] | None = None
        in_flight: list[int] = []
        try:
            while not lock.is_closed():
                async with self.pool.acquire() as conn:
                    rows = await repository.unsent_events(conn, BATCH, in_flight)
                if not rows:
                    break
                deliveries = await self._send(rows)
                if confirming is not None:
                    await confirming  # the batch before is marked first
                confirming = asyncio.create_task(self._confirm(rows, deliveries))
                in_flight = [row["id"] for row in rows]
                if len(rows) < BATCH:
                    break
            if confirming is not None:
                await confirming
        finally:
            if confirming is not None and not confirming.done():
                confirming.cancel()  # its events stay unsent, and go again: delivery is at-least-once
                with contextlib.suppress(BaseException):
                    await confirming

    async def _send(self, rows: list[asyncpg.Record]) -> list[asyncio.Future[object]]:
        """Queues the events in order, in one producer batch per partition (more when one fills up); each
        future resolves when Kafka has acknowledged its batch.

        Batches, not a send() per event: a send costs a future and a pass through the producer's accumulator
        for every event, most of the relay's CPU in a burst. Partitions are chosen as send() would.
        """
        producer = await self._ensure_producer()
        deliveries: list[asyncio.Future[object]] = []
        batches: dict[tuple[str, int], BatchBuilder] = {}
        partitions: dict[str, list[int]] = {}
        for n, row in enumerate(rows, 1):
            topic = row["topic"]
            if topic not in partitions:
                partitions[topic] = sorted(await producer.partitions_for(topic))
            partition = self._partitioner(row["message_key"], partitions[topic], partitions[topic])
            record = {
                "key": row["message_key"],
                "value": row["payload"],
                "timestamp": None,
                "headers": [(name, value.encode()) for name, value in row["headers"]],
            }
            batch = batches.get((topic, partition))
            if batch is None or batch.append(**record) is None:
                if batch is not None:  # full: it goes, and a new one starts
                    deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[(topic, partition)] = producer.create_batch()
                if batch.append(**record) is None:
                    raise MessageSizeTooLargeError(f"outbox event {row['id']} does not fit in a producer batch")
            # Nothing here suspends: without a yield, a batch held the event loop (shared with verify when the
            # relay runs inside the keys service) for as long as it took to queue.
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        for (topic, partition), batch in batches.items():
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        return deliveries

    async def _confirm(self, rows: list[asyncpg.Record], deliveries: list[asyncio.Future[object]]) -> None:
        await asyncio.gather(*deliveries)
        async with self.pool.acquire() as conn:
            await repository.mark_sent(conn, [row["id"] for row in rows])
        now = datetime.now(UTC)
        for n, row in enumerate(rows, 1):
            RELAY_LAG.observe((now - row["created_at"]).total_seconds())
            if n % (4 * YIELD_EVERY) == 0:
                await asyncio.sleep(0)
        RELAY_PUBLISHED.inc(len(rows))

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = idempotent_producer(self.kafka, self.client_id)
            await producer.start()
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception:
                log.debug("relay: producer did not stop cleanly", exc_info=True)

    async def close(self) -> None:
        await self._drop_producer()
