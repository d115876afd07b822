"""A consumer whose message keeps failing: it says so (lag kept up to date while it retries, and the last time
it moved past a message), gives up after `retry_for` by dead-lettering the message, and the counters an
alert reads with increase() exist at 0 from the start."""

import time

from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY

from shared.consumer import CONSUMER_LAG, EventConsumer
from shared.events import CloudEvent, KeyDeleted, encode
from shared.kafka import KafkaAccess
from tests.fixtures.events import detached_key_fields

NOWHERE = KafkaAccess("127.0.0.1:1", "PLAINTEXT")


def record(event: CloudEvent, offset: int, partition: int = 0) -> ConsumerRecord:
    key, value, headers = encode(event)
    return ConsumerRecord(
        topic="t",
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=tuple(headers),
    )


def deleted() -> CloudEvent:
    return CloudEvent.of(KeyDeleted(**detached_key_fields(), reason="manual", deleted_by="ada"))


def sample(name: str, labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


class FakeKafkaConsumer:
    """What EventConsumer asks of aiokafka's consumer while it retries: the partition's high-water mark."""

    def __init__(self, highwater: int) -> None:
        self.highwater_mark = highwater

    def highwater(self, tp: TopicPartition) -> int:
        return self.highwater_mark


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, list[tuple[str, bytes]]]] = []

    async def send_and_wait(self, topic: str, *, value: bytes | None, key: bytes | None, headers: list) -> None:
        self.sent.append((topic, value, headers))


def test_the_dead_letter_counter_of_a_group_exists_at_zero_as_soon_as_its_consumer_is_made():
    async def handle(event: CloudEvent) -> None: ...

    assert sample("keyward_events_dead_lettered_total", {"group": "born-at-zero"}) is None
    EventConsumer(kafka=NOWHERE, topic="t", group_id="born-at-zero", client_id="c", handle=handle)
    assert sample("keyward_events_dead_lettered_total", {"group": "born-at-zero"}) == 0.0


async def test_a_message_that_keeps_failing_goes_to_the_dead_letter_topic_after_retry_for_and_the_partition_moves_on():
    calls: list[float] = []

    async def broken(event: CloudEvent) -> None:
        calls.append(time.monotonic())
        raise ConnectionError("the handler's database refuses this one")

    consumer = EventConsumer(kafka=NOWHERE, topic="t", group_id="gives-up", client_id="c", handle=broken, retry_for=0.3)
    consumer._producer = producer = FakeProducer()  # type: ignore[assignment]
    event = deleted()
    tp = TopicPartition("t", 0)
    await consumer._process_partition(tp, [record(event, offset=41)])

    assert len(calls) >= 3, "tried bare, then retried with backoff"
    assert 0.3 <= calls[-1] - calls[0] < 2.0, "retried for retry_for, not for ever"
    ((topic, value, headers),) = producer.sent
    assert topic == "t.dlq" and value == encode(event)[1]
    header = dict(headers)
    assert header["dlq_source"] == b"t/0/41"
    assert b"gave up after" in header["dlq_error"] and b"ConnectionError" in header["dlq_error"]
    assert sample("keyward_events_dead_lettered_total", {"group": "gives-up"}) == 1.0
    assert sample("keyward_events_consumed_total", {"group": "gives-up", "type": event.type}) is None
    assert consumer._handled == {tp: 42}, "the partition moves past the dead-lettered message"


async def test_the_lag_is_brought_up_to_date_while_a_message_is_retried_and_progress_is_stamped_when_it_passes():
    lag_seen: list[float | None] = []

    async def flaky(event: CloudEvent) -> None:
        lag_seen.append(sample("keyward_consumer_lag", {"group": "retrying", "partition": "3"}))
        if len(lag_seen) < 3:
            raise ConnectionError("the database is restarting")

    consumer = EventConsumer(kafka=NOWHERE, topic="t", group_id="retrying", client_id="c", handle=flaky)
    consumer._consumer = FakeKafkaConsumer(highwater=110)  # type: ignore[assignment]
    # The lag as last seen after a batch: 0, which a stuck message would otherwise leave there for good.
    CONSUMER_LAG.labels("retrying", "3").set(0)
    before = time.time()
    await consumer._process(record(deleted(), offset=100, partition=3))

    assert lag_seen[0] == 0
    assert lag_seen[1:] == [10, 10], "from the message being retried to the partition's end"
    progress = sample("keyward_consumer_last_progress_timestamp_seconds", {"group": "retrying", "partition": "3"})
    assert progress is not None and progress >= before


def test_a_partition_that_moved_to_another_consumer_loses_its_progress_with_its_lag():
    async def handle(event: CloudEvent) -> None: ...

    consumer = EventConsumer(kafka=NOWHERE, topic="t", group_id="moved", client_id="c", handle=handle)
    consumer._report_lag(0, 5)
    consumer._report_lag(1, 0)
    # Counted from when the partition became ours.
    assert sample("keyward_consumer_last_progress_timestamp_seconds", {"group": "moved", "partition": "0"})

    consumer.drop_lag_of_unassigned({1})
    labels = {"group": "moved", "partition": "0"}
    assert sample("keyward_consumer_lag", labels) is None
    assert sample("keyward_consumer_last_progress_timestamp_seconds", labels) is None
    assert sample("keyward_consumer_last_progress_timestamp_seconds", {"group": "moved", "partition": "1"})
