from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from services.keys.usage import UsageRecorder


async def test_many_uses_become_one_write_with_the_latest_time_per_key():
    recorder = UsageRecorder()
    keys = [uuid4() for _ in range(100)]
    start = datetime.now(UTC)
    for i in range(1000):
        recorder.touch(keys[i % 100], start + timedelta(seconds=i))
    writes = []

    async def write(ids, times):
        writes.append(dict(zip(ids, times, strict=True)))

    assert await recorder.flush(write) == 100
    assert len(writes) == 1 and len(writes[0]) == 100
    assert writes[0][keys[0]] == start + timedelta(seconds=900)
    assert await recorder.flush(write) == 0 and len(writes) == 1


async def test_a_failed_write_loses_nothing():
    recorder = UsageRecorder()
    key = uuid4()
    at = datetime.now(UTC)
    recorder.touch(key, at)

    async def failing(ids, times):
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        await recorder.flush(failing)
    later = at + timedelta(seconds=5)
    recorder.touch(key, later)
    seen = {}

    async def write(ids, times):
        seen.update(zip(ids, times, strict=True))

    assert await recorder.flush(write) == 1
    assert seen == {key: later}
