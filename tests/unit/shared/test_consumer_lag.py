from prometheus_client import REGISTRY

from shared.consumer import CONSUMER_LAG, EventConsumer
from shared.kafka import KafkaAccess

NOWHERE = KafkaAccess("127.0.0.1:1", "PLAINTEXT")


async def handle(event) -> None:  # pragma: no cover - never called
    raise AssertionError


def lag(group: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("keyward_consumer_lag", {"group": group, "partition": str(partition)})


def test_a_partition_that_moved_to_another_consumer_loses_its_lag_value():
    consumer = EventConsumer(kafka=NOWHERE, topic="t", group_id="lag-test", client_id="c", handle=handle)
    for partition, value in ((0, 7), (1, 3), (2, 0)):
        CONSUMER_LAG.labels("lag-test", str(partition)).set(value)
    consumer._lag_reported = {0, 1, 2}

    consumer.drop_lag_of_unassigned({1, 2})
    assert (lag("lag-test", 0), lag("lag-test", 1), lag("lag-test", 2)) == (None, 3, 0)

    consumer.drop_lag_of_unassigned({1, 2, 3})  # a partition gained: nothing to drop, nothing invented
    assert (lag("lag-test", 1), lag("lag-test", 3)) == (3, None)
