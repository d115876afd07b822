"""Verify's lookups, coalesced: the verify requests that are ready in one turn of the event loop share one
statement (`digest = ANY(...)`), up to VERIFY_BATCH_MAX requests.

Under load most of a verify's cost is per statement, not per key: the pool's acquire and release, asyncpg's
round trip, and PostgreSQL's own work for a statement on the same cores (docs/benchmarks.md, scenario 1). A
request that finds no other waiting goes alone, at once (one more turn of the loop than a direct call); under
load a statement answers many. Each request still gets exactly the row of its own digests, so the answers do not
change; an error of the statement (no connection within DB_ACQUIRE_TIMEOUT, the database gone) is every waiting
request's, each then answered 503 as before.
"""

import asyncio
from collections.abc import Sequence

import asyncpg

from services.keys import repository
from services.keys.metrics import VERIFY_LOOKUP_BATCH

# One request's digests (one per HMAC secret of the ring) and the future its answer goes to.
_Waiting = tuple[Sequence[bytes], "asyncio.Future[asyncpg.Record | None]"]


class DigestLookups:
    def __init__(self, pool: asyncpg.Pool, max_batch: int) -> None:
        self._pool = pool
        self._max = max_batch
        self._waiting: list[_Waiting] = []
        self._flush_scheduled = False
        # The statements in flight (a task is only weakly referenced by the loop).
        self._running: set[asyncio.Task[None]] = set()

    async def find(self, digests: Sequence[bytes]) -> asyncpg.Record | None:
        """The live or expired row of the key whose digest is among `digests`, else None."""
        if self._max <= 1:
            VERIFY_LOOKUP_BATCH.observe(1)
            return await repository.find_by_digest(self._pool, list(digests))
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[asyncpg.Record | None] = loop.create_future()
        self._waiting.append((digests, answer))
        if len(self._waiting) >= self._max:
            self._flush()
        elif not self._flush_scheduled:
            # After every callback already ready in this turn: the requests read with this one join it.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await answer

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._waiting = self._waiting, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._answer(batch), name="verify-lookup")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _answer(self, batch: list[_Waiting]) -> None:
        VERIFY_LOOKUP_BATCH.observe(len(batch))
        try:
            if len(batch) == 1:
                rows = [await repository.find_by_digest(self._pool, list(batch[0][0]))]
            else:
                rows = await repository.find_by_digests(self._pool, list({d for ds, _ in batch for d in ds}))
            found = {bytes(r["digest"]): r for r in rows if r is not None}
            for digests, answer in batch:
                if not answer.done():  # its request may have gone (a client that hung up)
                    answer.set_result(next((found[d] for d in digests if d in found), None))
        except Exception as exc:  # the statement's failure is every waiting request's (a 503 for the unavailable)
            _fail(batch, exc)
        finally:
            # Cancelled (the service stopping) or anything else: no request is left waiting without an end. A
            # request nobody cancelled gets an unavailable dependency (503), not a cancellation of its own.
            _fail(batch, ConnectionError("verify's lookup was stopped"))

    async def close(self) -> None:
        """Sends what waits for the next turn and waits for the statements in flight (their requests are still
        being answered)."""
        self._flush()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def _fail(batch: list[_Waiting], exc: Exception) -> None:
    for _, answer in batch:
        if not answer.done():
            answer.set_exception(exc)
