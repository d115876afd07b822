"""Exports give way to verify: while a verify request is being answered, an export's next slice waits."""

import asyncio

from services.keys.priority import VerifyInFlight


async def test_work_that_gives_way_waits_while_verify_is_in_flight_and_goes_on_after():
    verifying = VerifyInFlight()
    verifying.enter()
    verifying.enter()
    waiting = asyncio.create_task(verifying.give_way())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    verifying.leave()
    await asyncio.sleep(0.01)
    assert not waiting.done()
    verifying.leave()
    await asyncio.wait_for(waiting, timeout=1)
    assert verifying.count == 0


async def test_with_no_verify_in_flight_giving_way_only_lets_others_run_once():
    verifying = VerifyInFlight()
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = asyncio.create_task(other())
    await asyncio.wait_for(verifying.give_way(), timeout=1)
    assert ran == ["other"]
    await task
