import dataclasses

from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY

from shared.consumer import EventConsumer
from shared.events import CloudEvent, KeyCreated, KeyDeleted, encode
from shared.kafka import KafkaAccess
from tests.fixtures.events import detached_key_fields

NOWHERE = KafkaAccess("127.0.0.1:1", "PLAINTEXT")


def record(event: CloudEvent) -> ConsumerRecord:
    key, value, headers = encode(event)
    return ConsumerRecord(
        topic="t",
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=tuple(headers),
    )


def deletions_counted(group: str, metric: str = "keyward_events_consumed_total") -> float:
    return REGISTRY.get_sample_value(metric, {"group": group, "type": "io.keyward.apikey.deleted.v1"}) or 0.0


def consumed(group: str) -> float:
    return deletions_counted(group)


async def test_an_event_whose_handling_fails_for_now_is_handled_again_until_it_succeeds():
    event = CloudEvent.of(KeyDeleted(**detached_key_fields(), reason="manual", deleted_by="ada"))
    seen: list[str] = []

    async def flaky(received: CloudEvent) -> None:
        seen.append(received.id)
        if len(seen) < 3:
            raise ConnectionError("the database is restarting")

    consumer = EventConsumer(kafka=NOWHERE, topic="t", group_id="retry-test", client_id="c", handle=flaky)
    before = consumed("retry-test")
    await consumer._process(record(event))
    assert seen == [event.id] * 3
    assert consumed("retry-test") == before + 1


async def test_an_event_handled_at_the_first_try_is_handled_once_and_counted():
    event = CloudEvent.of(KeyDeleted(**detached_key_fields(), reason="manual", deleted_by="ada"))
    seen: list[str] = []

    async def handle(received: CloudEvent) -> None:
        seen.append(received.id)

    consumer = EventConsumer(kafka=NOWHERE, topic="t", group_id="once-test", client_id="c", handle=handle)
    await consumer._process(record(event))
    assert seen == [event.id]
    assert consumed("once-test") == 1


async def test_a_batch_goes_to_handle_many_at_once_and_each_event_is_counted():
    events = [
        CloudEvent.of(KeyDeleted(**detached_key_fields(), reason="expired", deleted_by="system")) for _ in range(3)
    ]
    batches: list[list[str]] = []

    async def one(received: CloudEvent) -> None:
        raise AssertionError("the batch should not be handled one by one")

    async def many(received: list[CloudEvent]) -> None:
        batches.append([e.id for e in received])

    consumer = EventConsumer(
        kafka=NOWHERE, topic="t", group_id="many-test", client_id="c", handle=one, handle_many=many
    )
    before = consumed("many-test")
    assert await consumer._process_many([record(e) for e in events]) is True
    assert batches == [[e.id for e in events]]
    assert consumed("many-test") == before + 3


async def test_a_batch_that_fails_or_holds_a_stranger_is_left_to_the_one_by_one_path():
    events = [
        CloudEvent.of(KeyDeleted(**detached_key_fields(), reason="expired", deleted_by="system")) for _ in range(2)
    ]
    calls: list[int] = []

    async def one(received: CloudEvent) -> None: ...

    async def failing(received: list[CloudEvent]) -> None:
        calls.append(len(received))
        raise ConnectionError("the database is restarting")

    consumer = EventConsumer(
        kafka=NOWHERE, topic="t", group_id="fallback-test", client_id="c", handle=one, handle_many=failing
    )
    before = consumed("fallback-test")
    assert await consumer._process_many([record(e) for e in events]) is False
    assert calls == [2]
    stranger = dataclasses.replace(record(events[0]), headers=(("ce_specversion", b"0.3"),))
    assert await consumer._process_many([record(events[1]), stranger]) is False
    assert calls == [2], "a batch with a message that is not an event is not offered at once"
    assert consumed("fallback-test") == before


async def test_a_consumer_of_some_types_passes_the_others_over_undecoded_and_moves_past_them():
    created = CloudEvent.of(KeyCreated(**detached_key_fields()))
    deleted = CloudEvent.of(KeyDeleted(**detached_key_fields(), reason="expired", deleted_by="system"))
    # A deleted event whose body is not even JSON: passed over by its header, it is never decoded.
    garbled = dataclasses.replace(record(deleted), value=b"not json")
    stranger = dataclasses.replace(record(created), headers=(("ce_type", b"io.example.other.v1"),))
    messages = [
        dataclasses.replace(m, offset=n)
        for n, m in enumerate([record(deleted), record(created), garbled, stranger, record(deleted)])
    ]
    seen: list[str] = []
    dead: list[int] = []

    async def handle(received: CloudEvent) -> None:
        seen.append(received.id)

    consumer = EventConsumer(
        kafka=NOWHERE, topic="t", group_id="types-test", client_id="c", handle=handle, types={KeyCreated.type}
    )

    async def dead_letter(message: ConsumerRecord, error: Exception) -> None:
        dead.append(message.offset)

    consumer._dead_letter = dead_letter  # type: ignore[method-assign]
    tp = TopicPartition("t", 0)
    await consumer._process_partition(tp, messages)
    assert seen == [created.id]
    assert dead == [3], "a message of an unknown type is still judged, and dead-lettered"
    assert deletions_counted("types-test", "keyward_events_passed_over_total") == 3
    assert consumer._handled == {tp: 5}
