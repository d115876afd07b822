import asyncio
import contextlib
import logging

from shared.tasks import cancel_all


async def test_every_task_is_cancelled_and_has_ended_when_it_returns():
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    tasks = [asyncio.create_task(forever(), name=f"worker-{n}") for n in range(3)]
    await started.wait()
    await cancel_all([*tasks, None])
    assert all(task.done() and task.cancelled() for task in tasks)


async def test_a_task_that_outlives_the_timeout_is_named_and_left(caplog):
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # finishes its cleanup only later

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="shared.tasks"):
        await cancel_all([task], timeout=0.05)
    assert not task.done()
    assert "stopping without waiting for: stubborn" in caplog.text
    release.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
