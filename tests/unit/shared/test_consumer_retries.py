from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY

from shared.consumer import EventConsumer
from shared.events import CloudEvent, KeyDeleted, encode
from tests.fixtures.events import detached_key_fields


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


def consumed(group: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "keyward_events_consumed_total", {"group": group, "type": "io.keyward.apikey.deleted.v1"}
        )
        or 0.0
    )


async def test_an_event_whose_handling_fails_for_now_is_handled_again_until_it_succeeds():
    event = CloudEvent.of(KeyDeleted(**detached_key_fields(), reason="manual", deleted_by="ada"))
    seen: list[str] = []

    async def flaky(received: CloudEvent) -> None:
        seen.append(received.id)
        if len(seen) < 3:
            raise ConnectionError("the database is restarting")

    consumer = EventConsumer(bootstrap="127.0.0.1:1", topic="t", group_id="retry-test", client_id="c", handle=flaky)
    before = consumed("retry-test")
    await consumer._process(record(event))
    assert seen == [event.id] * 3
    assert consumed("retry-test") == before + 1


async def test_an_event_handled_at_the_first_try_is_handled_once_and_counted():
    event = CloudEvent.of(KeyDeleted(**detached_key_fields(), reason="manual", deleted_by="ada"))
    seen: list[str] = []

    async def handle(received: CloudEvent) -> None:
        seen.append(received.id)

    consumer = EventConsumer(bootstrap="127.0.0.1:1", topic="t", group_id="once-test", client_id="c", handle=handle)
    await consumer._process(record(event))
    assert seen == [event.id]
    assert consumed("once-test") == 1
