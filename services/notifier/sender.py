"""The sender loop: works the notices due, several at once, each on its own SMTP connection.

The consumer only records notices; this loop delivers and retries them, so a tenant whose mail is being
retried never holds up another tenant, nor the consumption of events. A replica leases the notices it
works; any replica takes over one whose lease ran out.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from datetime import timedelta

import asyncpg

from services.notifier import repository
from services.notifier.context import NotifierContext
from services.notifier.digests import repository as digests
from services.notifier.digests.service import work_digest
from services.notifier.mailer import IDLE_REUSE_SECONDS
from services.notifier.metrics import LEDGER_OPEN
from services.notifier.service import work_notice
from shared.tasks import cancel_all

log = logging.getLogger(__name__)


class Sender:
    def __init__(self, ctx: NotifierContext, *, concurrency: int, poll_interval: timedelta, lease: timedelta) -> None:
        self.ctx = ctx
        self.concurrency = concurrency
        self.poll_seconds = poll_interval.total_seconds()
        self.lease = lease
        self._wake = asyncio.Event()
        self._busy: dict[str, asyncio.Task[None]] = {}
        # Notices leased ahead, up to `concurrency` of them, so that a slot set free starts the next one at
        # once rather than after a round trip to the database: (row, when leased).
        self._ready: deque[tuple[asyncpg.Record, float]] = deque()
        # No digest is looked for before this time (monotonic): none was due at the last look. A digest is
        # formed as notices are recorded (a poke) or falls due again after a retry's wait (the next poll), so
        # the lease loop spares itself a round trip each turn.
        self._digests_after = 0.0

    def poke(self) -> None:
        """A notice was just recorded (a digest perhaps formed): look now rather than at the next poll."""
        self._digests_after = 0.0
        self._wake.set()

    async def stop(self, timeout: float) -> None:
        """Starts no new send, lets the ones in flight finish and record their outcome, for up to `timeout`;
        gives back the notices leased ahead, so another replica need not wait for their lease to lapse."""
        self.ctx.stopping.set()
        self._wake.set()
        in_flight = [task for task in self._busy.values() if not task.done()]
        if in_flight:
            _, late = await asyncio.wait(in_flight, timeout=timeout)
            await cancel_all(late)
        ready, self._ready = self._ready, deque()
        try:
            for row, _ in ready:
                if _is_digest(row):
                    await digests.reschedule_digest(self.ctx.pool, row["digest_id"], timedelta())
                else:
                    await repository.reschedule_notice(
                        self.ctx.pool, row["key_id"], row["threshold_seconds"], timedelta()
                    )
        except Exception:
            log.warning("could not give back the notices leased ahead; they wait for their lease", exc_info=True)

    async def run(self) -> None:
        busy = self._busy
        try:
            while not self.ctx.stopping.is_set():
                self._wake.clear()
                self._start_ready()
                wanted = 2 * self.concurrency - len(busy) - len(self._ready)
                if wanted > 0:
                    try:
                        taken = [*busy, *(_name(r) for r, _ in self._ready)]
                        # Digests first: each is a whole tenant's worth of notices, already waiting as one.
                        rows = []
                        if time.monotonic() >= self._digests_after:
                            rows = await digests.lease_due_digests(self.ctx.pool, wanted, self.lease, taken)
                            if not rows:
                                self._digests_after = time.monotonic() + self.poll_seconds
                        if len(rows) < wanted:
                            rows += await repository.lease_due_notices(
                                self.ctx.pool, wanted - len(rows), self.lease, taken
                            )
                    except Exception:
                        log.warning("could not look for due notices", exc_info=True)
                        rows = []
                    leased = time.monotonic()
                    self._ready.extend((row, leased) for row in rows)
                    self._start_ready()
                await self._wait(busy)
        except asyncio.CancelledError:
            await cancel_all(busy.values())
            raise

    def _start_ready(self) -> None:
        """Starts leased notices while slots are free; one whose lease is half gone is left for a new lease."""
        fresh_for = self.lease.total_seconds() / 2
        while self._ready and len(self._busy) < self.concurrency and not self.ctx.stopping.is_set():
            row, leased = self._ready.popleft()
            if time.monotonic() - leased > fresh_for:
                continue
            name = _name(row)
            work = work_digest(self.ctx, row) if _is_digest(row) else work_notice(self.ctx, row)
            self._busy[name] = asyncio.create_task(work, name=f"notice {name}")

    async def _wait(self, busy: dict[str, asyncio.Task[None]]) -> None:
        wake = asyncio.create_task(self._wake.wait())
        try:
            await asyncio.wait([wake, *busy.values()], timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await wake
        for name, task in list(busy.items()):
            if task.done():
                del busy[name]
                if not task.cancelled() and task.exception() is not None:
                    log.error("working %s failed; it is retried after its lease", name, exc_info=task.exception())


def _is_digest(row: asyncpg.Record) -> bool:
    """A leased digest's row, rather than a notice's (which carries its key)."""
    return row.get("key_id") is None


def _name(row: asyncpg.Record) -> str:
    return f"digest/{row['digest_id']}" if _is_digest(row) else f"{row['key_id']}/{row['threshold_seconds']}"


async def housekeeping(ctx: NotifierContext, retention: timedelta, interval: float = 5.0) -> None:
    """Keeps the ledger gauges current, closes SMTP connections left idle, and forgets handled event ids
    once no redelivery can come."""
    last_purge = 0.0
    while True:
        try:
            rows = await repository.ledger_backlog(ctx.pool, ctx.claim_timeout)
            counts = {r["state"]: r["n"] for r in rows}
            for state in ("pending", "sending", "stale"):
                LEDGER_OPEN.labels(state).set(counts.get(state, 0))
            await ctx.mailer.close_idle(older_than=IDLE_REUSE_SECONDS)
            now = asyncio.get_running_loop().time()
            if now - last_purge > 3600:
                await repository.purge_processed(ctx.pool, retention)
                last_purge = now
        except Exception:
            log.warning("ledger housekeeping failed", exc_info=True)
        await asyncio.sleep(interval)
