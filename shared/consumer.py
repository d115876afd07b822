"""A lifecycle-event consumer: read, parse, dispatch, then commit — only after the handler's work is durable.

A message that is not a lifecycle event, or whose handler raises `PermanentError`, goes to the dead-letter
topic with the error and its original headers, and consumption goes on. Any other exception is taken as
transient (database down, say): the same message is retried with backoff, and nothing after it in that
partition is committed meanwhile; after `retry_for` (15 minutes) of failures it goes to the dead-letter topic
too, so one message that never succeeds cannot hold its partition for ever.

A stuck partition shows: `keyward_consumer_last_progress_timestamp_seconds` says when each partition last
moved past a message, and `keyward_consumer_lag` is brought up to date while a message is retried (not only
after a batch), so "lag and no progress" is an alert (KeywardConsumerStalled). Every label set an alert reads
with increase() exists from the start (a counter born at its first increment reads as no increase).

A consumer that handles only some event types names them (`types`): a message of another lifecycle type is
passed over by its `ce_type` header, undecoded (decoding was a large share of the reaper's CPU in a burst of
`deleted` events it has nothing to do with).

A consumer may also take a `handle_many`: the events of a partition's batch at once, in order (one
transaction for a burst of a hundred thousand `deleted` events, rather than one each). If it fails, for any
reason, that batch goes through `handle` one event at a time instead, with the retries and dead-lettering
above: `handle_many` is only ever a shortcut, and must do what `handle` would for each event.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import Counter, Gauge
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    before_sleep_log,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_exponential,
)

from shared.events import EVENT_TYPES, CloudEvent, decode
from shared.events.envelope import InvalidEvent
from shared.kafka import KafkaAccess, idempotent_producer, manual_commit_consumer, reconnecting

log = logging.getLogger(__name__)

CONSUMER_LAG = Gauge("keyward_consumer_lag", "Messages not yet consumed", ["group", "partition"])
CONSUMED = Counter("keyward_events_consumed_total", "Events handled", ["group", "type"])
PASSED_OVER = Counter(
    "keyward_events_passed_over_total", "Events of a type this consumer does not handle, not decoded", ["group", "type"]
)
DEAD_LETTERED = Counter("keyward_events_dead_lettered_total", "Messages sent to the dead-letter topic", ["group"])
LAST_PROGRESS = Gauge(
    "keyward_consumer_last_progress_timestamp_seconds",
    "When this consumer last moved past a message of the partition (handled, passed over or dead-lettered), "
    "or was given the partition",
    ["group", "partition"],
)
RETRIED = Counter(
    "keyward_consumer_retries_total", "Handling attempts that failed for now and are tried again", ["group"]
)

Handler = Callable[[CloudEvent], Awaitable[None]]
BatchHandler = Callable[[list[CloudEvent]], Awaitable[None]]
# Messages handled between two commits at most: bounds what a crash makes the group handle again.
COMMIT_EVERY = 500
# How long one message's transient failures are retried before it goes to the dead-letter topic. Longer than
# KeywardConsumerStalled takes to fire (10 minutes), so an operator hears of it first.
RETRY_FOR_SECONDS = 15 * 60.0
# On the way out (SIGTERM): the last commit, then each Kafka client's stop, at most this long each. Leaving the
# group can otherwise wait for a rebalance for a whole session timeout; the group's coordinator notices a member
# that left without a word anyway.
COMMIT_ON_STOP_SECONDS = 3.0
CLIENT_STOP_SECONDS = 3.0
# The most a consumer's task takes to end once cancelled: part of each pod's shutdown budget (the test that
# adds it up is tests/integration/deploy/test_shutdown_budget.py).
STOP_SECONDS = COMMIT_ON_STOP_SECONDS + 2 * CLIENT_STOP_SECONDS


class _PerType:
    """A counter's children by event type, each label bound once: a label lookup for every event showed in a
    consumer's profile (docs/benchmarks.md, "Figures behind the code")."""

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
        kafka: KafkaAccess,
        topic: str,
        group_id: str,
        client_id: str,
        handle: Handler,
        handle_many: BatchHandler | None = None,
        types: Collection[str] | None = None,
        dead_letter_topic: str | None = None,
        retry_for: float = RETRY_FOR_SECONDS,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.group_id = group_id
        self.client_id = client_id
        self.handle = handle
        self.handle_many = handle_many
        # The event types handled (None: all); see the module's docstring.
        self.types = frozenset(types) if types is not None else None
        self.dead_letter_topic = dead_letter_topic or f"{topic}.dlq"
        self.retry_for = retry_for
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._handled: dict[TopicPartition, int] = {}
        self._consumed = _PerType(CONSUMED, group_id)
        self._passed_over = _PerType(PASSED_OVER, group_id)
        # Partitions this process has a lag value for: dropped when they move to another consumer, so a
        # stale value does not stay on the dashboard (and in alerts) after a rebalance.
        self._lag_reported: set[int] = set()
        self._progress: dict[int, Gauge] = {}
        # Created now, at 0: the first dead letter is then an increase that alerts, not the birth of a series.
        DEAD_LETTERED.labels(group_id)
        RETRIED.labels(group_id)
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Consumes until cancelled; reconnects after broker outages."""
        await reconnecting(self._session, log)

    async def _session(self) -> None:
        """One connection's life: whatever ends it, what was handled is committed and the clients closed."""
        try:
            await self._consume()
        finally:
            await self._commit_handled(timeout=COMMIT_ON_STOP_SECONDS)
            await self._close()

    async def _consume(self) -> None:
        self._consumer = manual_commit_consumer(self.kafka, self.group_id, self.topic, client_id=self.client_id)
        await self._consumer.start()
        self._producer = idempotent_producer(self.kafka, f"{self.client_id}-dlq")
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

    async def _commit_handled(self, timeout: float | None = None) -> None:
        """Commits what was handled; also on the way out (SIGTERM, for up to `timeout`), so a restart replays
        as little as possible."""
        handled, self._handled = self._handled, {}
        if handled and self._consumer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._consumer.commit(handled)), timeout)
            except Exception:
                log.warning("could not commit offsets; those events will be handled again", exc_info=True)

    async def _process_partition(self, tp: TopicPartition, messages: list[ConsumerRecord]) -> None:
        """A partition's messages, in order; `_handled` moves past each once its work is durable."""
        wanted = messages if self.types is None else [m for m in messages if self._wanted(m)]
        if self.handle_many is not None and len(wanted) > 1 and await self._process_many(wanted):
            self._handled[tp] = messages[-1].offset + 1
            self._progressed(tp.partition)
            return
        offsets = {m.offset for m in wanted}
        for message in messages:
            if message.offset in offsets:
                await self._process(message)
            self._handled[tp] = message.offset + 1
        self._progressed(tp.partition)

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
        # The first try runs bare: setting up a retry loop for every event was a visible share of a consumer's CPU
        # in a burst of a hundred thousand events. Only an event whose handling failed gets one.
        try:
            handled = await self._handle(message, event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("handling event %s failed; retrying", event.id, exc_info=True)
            handled = await self._retry(message, event, exc)
        if handled:
            self._consumed.inc(event.type)
        self._progressed(message.partition)

    async def _retry(self, message: ConsumerRecord, event: CloudEvent, first: Exception) -> bool:
        """Tries the event again with backoff for up to `retry_for`, keeping the partition's lag up to date
        meanwhile; then dead-letters it. True if it was handled in the end."""
        self._waiting(message)
        started = time.monotonic()

        def before_sleep(state: RetryCallState) -> None:
            RETRIED.labels(self.group_id).inc()
            self._waiting(message)
            _log_retry(state)

        try:
            async for attempt in AsyncRetrying(
                wait=wait_exponential(multiplier=0.2, max=10),
                stop=stop_after_delay(self.retry_for),
                retry=retry_if_not_exception_type(asyncio.CancelledError),
                before_sleep=before_sleep,
            ):
                with attempt:
                    return await self._handle(message, event)
        except RetryError as exc:
            last = exc.last_attempt.exception() or first
            attempts = exc.last_attempt.attempt_number + 1
            error = f"gave up after {attempts} attempts in {time.monotonic() - started:.0f} s: {last!r}"
            log.error("event %s: %s; dead-lettering it", event.id, error)
            await self._dead_letter(message, RuntimeError(error))
        return False

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
            self._report_lag(tp.partition, highwater - position)

    def _waiting(self, message: ConsumerRecord) -> None:
        """The lag of a partition whose message is being retried: from that message to the end."""
        highwater = None
        if self._consumer is not None:
            highwater = self._consumer.highwater(TopicPartition(message.topic, message.partition))
        if highwater is not None:
            self._report_lag(message.partition, highwater - message.offset)

    def _report_lag(self, partition: int, lag: int) -> None:
        CONSUMER_LAG.labels(self.group_id, str(partition)).set(max(0, lag))
        if partition not in self._lag_reported:
            # Newly ours: its progress is counted from now, not from whenever another consumer last moved it.
            self._lag_reported.add(partition)
            self._progressed(partition)

    def _progressed(self, partition: int) -> None:
        gauge = self._progress.get(partition)
        if gauge is None:
            gauge = self._progress[partition] = LAST_PROGRESS.labels(self.group_id, str(partition))
        gauge.set(time.time())

    def drop_lag_of_unassigned(self, assigned: set[int]) -> None:
        """Forgets the lag and progress of partitions that moved to another consumer (a rebalance)."""
        for partition in (self._lag_reported | set(self._progress)) - assigned:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.group_id, str(partition))
            with contextlib.suppress(KeyError):
                LAST_PROGRESS.remove(self.group_id, str(partition))
            self._progress.pop(partition, None)
        self._lag_reported &= assigned

    async def _close(self) -> None:
        self.ready.clear()
        consumer, producer, self._consumer, self._producer = self._consumer, self._producer, None, None
        for client in (consumer, producer):
            if client is not None:
                try:
                    await asyncio.wait_for(client.stop(), CLIENT_STOP_SECONDS)
                except Exception:
                    log.debug("client did not stop cleanly", exc_info=True)


_log_retry = before_sleep_log(log, logging.WARNING)
