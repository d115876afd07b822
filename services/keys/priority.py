"""Verify first: long administrators' work (an export's rows) gives way to the verify requests in flight.

The service answers on one event loop. An export that fills its sockets' buffers as fast as it can make rows
runs a slice of rows at every turn of the loop, and a verify request needs several turns (its request, its
query, its answer): beside four such exports its latency grew from milliseconds to seconds. So verify counts
itself in and out (two integer operations on its path), and an export waits, between slices, until no verify
is being answered.
"""

import asyncio


class VerifyInFlight:
    __slots__ = ("_quiet", "count")

    def __init__(self) -> None:
        self.count = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    def enter(self) -> None:
        self.count += 1
        if self.count == 1:
            self._quiet.clear()

    def leave(self) -> None:
        self.count -= 1
        if not self.count:
            self._quiet.set()

    async def give_way(self) -> None:
        """Lets whatever is ready run (a verify request that just arrived), then waits while verify is busy."""
        await asyncio.sleep(0)
        while self.count:
            await self._quiet.wait()
