"""The producers' partitioner: the same partitions as aiokafka's default (and Java's clients), hashed once."""

from uuid import uuid4

from aiokafka.partitioner import DefaultPartitioner

from shared.kafka import RememberingPartitioner


def test_every_key_lands_where_the_default_partitioner_puts_it():
    remembering, default = RememberingPartitioner(), DefaultPartitioner()
    keys = [str(uuid4()).encode() for _ in range(500)] + [b"", b"a", b"tenant"]
    for count in (1, 3, 12, 50):
        partitions = list(range(count))
        for key in keys:
            assert remembering(key, partitions, partitions) == default(key, partitions, partitions)
            # asked again, from the memory this time
            assert remembering(key, partitions, partitions) == default(key, partitions, partitions)


def test_a_key_is_hashed_once_however_many_messages_carry_it():
    partitioner = RememberingPartitioner()
    tenants = [str(uuid4()).encode() for _ in range(10)]
    for _ in range(100):
        for tenant in tenants:
            partitioner(tenant, [0, 1, 2], [0, 1, 2])
    info = partitioner._hash.cache_info()
    assert (info.misses, info.hits) == (10, 990)


def test_a_message_without_a_key_goes_to_an_available_partition():
    partitioner = RememberingPartitioner()
    assert {partitioner(None, [0, 1, 2], [2]) for _ in range(20)} == {2}
    assert {partitioner(None, [0, 1, 2], []) for _ in range(200)} <= {0, 1, 2}
