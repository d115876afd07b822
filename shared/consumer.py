"""A lifecycle-event consumer: read, parse, dispatch, then commit — only after the handler's work is durable.

A message that is not a lifecycle event, or whose handler raises `PermanentError`, goes to the dead-letter
topic with the error and its original headers, and consumption goes on. Any other exception is taken as
transient (database down, say): the same message is retried with backoff, and nothing after it in that
partition is committed meanwhile.

A consumer that handles only some event types names them (`types`): a message of another lifecycle type is
passed over by its `ce_type` header, undecoded (decoding was a quarter of the reaper's CPU in a burst of
`deleted` events it has nothing to do with).

A consumer may also take a `handle_many`: the events of a partition's batch at once, in order (one
transaction for a burst of a hundred thousand `deleted` events, rather than one each). If it fails, for any
reason, that batch goes through `handle` one event at a time instead, with the retries and dead-lettering
above: `handle_many` is only ever a shortcut, and must do what `handle` would for each event.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import Counter, Gauge
from tenacity import AsyncRetrying, before_sleep_log, retry_if_not_exception_type, wait_exponential

from shared.events import EVENT_TYPES, CloudEvent, decode
from shared.events.envelope import InvalidEvent
from shared.kafka import idempotent_producer, manual_commit_consumer

log = logging.getLogger(__name__)

CONSUMER_LAG = Gauge("keyward_consumer_lag", "Messages not yet consumed", ["group", "partition"])
CONSUMED = Counter("keyward_events_consumed_total", "Events handled", ["group", "type"])
PASSED_OVER = Counter(
    "keyward_events_passed_over_total", "Events of a type this consumer does not handle, not decoded", ["group", "type"]
)
DEAD_LETTERED = Counter("keyward_events_dead_lettered_total", "Messages sent to the dead-letter topic", ["group"])

Handler = Callable[[CloudEvent], Awaitable[None]]
BatchHandler = Callable[[list[CloudEvent]], Awaitable[None]]
# Messages handled between two commits at most: bounds what a crash makes the group handle again.
COMMIT_EVERY = 500


class _PerType:
    """A counter's children by event type, each label bound once: looking a label up for every event was a
    twentieth of a consumer's CPU."""

    def __init__(self, metric: Counter, group: str) -> None:
        self.metric = metric
        self.group = group
        self.children: dict[str, Counter] = {}

    def inc(self, event_type: str) -> None:
        child = self.children.get(event_type)
        if child is None:
            child = self.children[event_type] = self.metric.labels(self.group, event_type)
        child.inc()


class PermanentError(Exception):
    """The message can never be handled; retrying would only block the partition."""


class EventConsumer:
    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group_id: str,
        client_id: str,
        handle: Handler,
        handle_many: BatchHandler | None = None,
        types: Collection[str] | None = None,
        dead_letter_topic: str | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.client_id = client_id
        self.handle = handle
        self.handle_many = handle_many
        # The event types handled (None: all); see the module's docstring.
        self.types = frozenset(types) if types is not None else None
        self.dead_letter_topic = dead_letter_topic or f"{topic}.dlq"
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._handled: dict[TopicPartition, int] = {}
        self._consumed = _PerType(CONSUMED, group_id)
        self._passed_over = _PerType(PASSED_OVER, group_id)
        # Partitions this process has a lag value for: dropped when they move to another consumer, so a
        # stale value does not stay on the dashboard (and in alerts) after a rebalance.
        self._lag_reported: set[int] = set()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Consumes until cancelled; reconnects after broker outages."""
        async for attempt in AsyncRetrying(
            wait=wait_exponential(multiplier=0.5, max=10),
            retry=retry_if_not_exception_type(asyncio.CancelledError),
            before_sleep=before_sleep_log(log, logging.WARNING),
        ):
            with attempt:
                try:
                    await self._consume()
                finally:
                    await self._commit_handled()
                    await self._close()

    async def _consume(self) -> None:
        self._consumer = manual_commit_consumer(self.bootstrap, self.group_id, self.topic, client_id=self.client_id)
        await self._consumer.start()
        self._producer = idempotent_producer(self.bootstrap, f"{self.client_id}-dlq")
        await self._producer.start()
        self.ready.set()
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000, max_records=COMMIT_EVERY)
            for tp, messages in batches.items():
                await self._process_partition(tp, messages)
            # Every handler's work is durable by now; a crash before the commit replays at most this batch,
            # which handlers absorb (they are idempotent), so one commit per batch, all its partitions in one
            # request, is enough.
            await self._commit_handled()
            for tp in batches or self._consumer.assignment():
                await self._observe_lag(tp)
            self.drop_lag_of_unassigned({tp.partition for tp in self._consumer.assignment()})

    async def _commit_handled(self) -> None:
        """Commits what was handled; also on the way out (SIGTERM), so a restart replays as little as possible."""
        handled, self._handled = self._handled, {}
        if handled and self._consumer is not None:
            try:
                await asyncio.shield(self._consumer.commit(handled))
            except Exception:
                log.warning("could not commit offsets; those events will be handled again", exc_info=True)

    async def _process_partition(self, tp: TopicPartition, messages: list[ConsumerRecord]) -> None:
        """A partition's messages, in order; `_handled` moves past each once its work is durable."""
        wanted = messages if self.types is None else [m for m in messages if self._wanted(m)]
        if self.handle_many is not None and len(wanted) > 1 and await self._process_many(wanted):
            self._handled[tp] = messages[-1].offset + 1
            return
        offsets = {m.offset for m in wanted}
        for message in messages:
            if message.offset in offsets:
                await self._process(message)
            self._handled[tp] = message.offset + 1

    def _wanted(self, message: ConsumerRecord) -> bool:
        """False (and counted) for a lifecycle event of a type not in `types`, told by its header alone.
        Anything else is wanted, a message that is not an event included: `_process` dead-letters it."""
        assert self.types is not None
        for name, value in message.headers:
            if name == "ce_type":
                event_type = value.decode("utf-8", "replace")
                if event_type in self.types or event_type not in EVENT_TYPES:
                    return True
                self._passed_over.inc(event_type)
                return False
        return True

    async def _process_many(self, messages: list[ConsumerRecord]) -> bool:
        """A partition's batch through `handle_many`; False if it was not handled so (the caller then hands
        the messages to `_process` one by one: a message that is not an event, or a failure)."""
        assert self.handle_many is not None
        try:
            events = [decode(m.key, m.value, list(m.headers)) for m in messages]
        except InvalidEvent:
            return False  # `_process` dead-letters it, in its place in the partition's order
        try:
            await self.handle_many(events)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("handling %d events at once failed; handling them one by one", len(events), exc_info=True)
            return False
        for event in events:
            self._consumed.inc(event.type)
        return True

    async def _process(self, message: ConsumerRecord) -> None:
        try:
            event = decode(message.key, message.value, list(message.headers))
        except InvalidEvent as exc:
            await self._dead_letter(message, exc)
            return
        # The first try runs bare: setting up a retry loop for every event was a fifth of a consumer's CPU
        # in a burst of a hundred thousand events. Only an event whose handling failed gets one.
        try:
            handled = await self._handle(message, event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("handling event %s failed; retrying", event.id, exc_info=True)
            async for attempt in AsyncRetrying(
                wait=wait_exponential(multiplier=0.2, max=10),
                retry=retry_if_not_exception_type(asyncio.CancelledError),
                before_sleep=before_sleep_log(log, logging.WARNING),
            ):
                with attempt:
                    handled = await self._handle(message, event)
        if handled:
            self._consumed.inc(event.type)

    async def _handle(self, message: ConsumerRecord, event: CloudEvent) -> bool:
        """Hands the event to the handler; False when the handler refused it for good (dead-lettered)."""
        try:
            await self.handle(event)
        except PermanentError as exc:
            await self._dead_letter(message, exc)
            return False
        return True

    async def _dead_letter(self, message: ConsumerRecord, error: Exception) -> None:
        assert self._producer is not None
        headers = [
            *list(message.headers),
            ("dlq_error", str(error)[:1000].encode()),
            ("dlq_source", f"{message.topic}/{message.partition}/{message.offset}".encode()),
            ("dlq_consumer_group", self.group_id.encode()),
        ]
        await self._producer.send_and_wait(
            self.dead_letter_topic, value=message.value, key=message.key, headers=headers
        )
        DEAD_LETTERED.labels(self.group_id).inc()
        log.warning("dead-lettered %s/%d/%d: %s", message.topic, message.partition, message.offset, error)

    async def _observe_lag(self, tp: TopicPartition) -> None:
        assert self._consumer is not None
        highwater = self._consumer.highwater(tp)
        if highwater is not None:
            position = await self._consumer.position(tp)
            CONSUMER_LAG.labels(self.group_id, str(tp.partition)).set(max(0, highwater - position))
            self._lag_reported.add(tp.partition)

    def drop_lag_of_unassigned(self, assigned: set[int]) -> None:
        for partition in self._lag_reported - assigned:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.group_id, str(partition))
        self._lag_reported &= assigned

    async def _close(self) -> None:
        self.ready.clear()
        consumer, producer, self._consumer, self._producer = self._consumer, self._producer, None, None
        for client in (consumer, producer):
            if client is not None:
                try:
                    await client.stop()
                except Exception:
                    log.debug("client did not stop cleanly", exc_info=True)
