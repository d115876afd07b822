"""The reaper's loop: sleep until the next key expires (REAPER_INTERVAL at most), then have the keys service
delete every expired key, batch after batch, and plan the next wake-up.

A mass expiry (more expired keys than one batch) is paced: spread evenly to be gone REAPER_SPREAD after the
oldest of them expired. A paced pass ends after REPLAN_SECONDS with a new count, from which the next one
sets its pace, so the pace follows a backlog that is still growing (keys expiring over a minute) or
shrinking (another replica).

Three sources say when to wake, the earliest wins: the schedule kept from the lifecycle events, the keys
service's own `next_expiry_at` (which also covers keys whose events were missed), and REAPER_INTERVAL as the
bound. Each pass asks the keys service whether any expired key is left, so a missed event can delay a
deletion by one interval at most, never forever. All times are on the keys service's clock (`now` from
expiry-status, advanced by the local monotonic clock), so clock skew between hosts does not matter.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from services.reaper.metrics import (
    BATCHES,
    EXPIRED_PRESENT,
    KEYS_REAPED,
    LAST_SUCCESS,
    NEXT_WAKE,
    PACE,
    PASS_DURATION,
    PASS_FAILURES,
)
from services.reaper.schemas import ExpiryStatus, ReapResult

log = logging.getLogger(__name__)

# After a pass that left an expired key behind (another replica holds it, or it expired meanwhile), wait
# this long before the next one rather than spin.
MIN_PAUSE = timedelta(milliseconds=50)
# How long a paced pass goes on before the next pass counts the backlog again and sets a new pace.
REPLAN_SECONDS = 2.0
# A pass that left expired keys behind ends with a status; the next one, MIN_PAUSE later, starts from it
# rather than ask again. During a mass expiry that second ask was a count of up to a million index entries
# every REPLAN_SECONDS, on the database verify reads from.
STATUS_REUSE_SECONDS = 0.25


class KeysApi(Protocol):
    async def reap(self, limit: int) -> ReapResult: ...
    async def expiry_status(self) -> ExpiryStatus: ...


class ScheduleStore(Protocol):
    async def next_expiry(self) -> datetime | None: ...
    async def forget_until(self, until: datetime) -> int: ...


class Reaper:
    def __init__(
        self,
        keys: KeysApi,
        schedule: ScheduleStore,
        *,
        interval: timedelta,
        batch_size: int,
        concurrency: int,
        max_rate: int = 0,
        spread: timedelta = timedelta(0),
        paced_batch_size: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`batch_size` keys a call as fast as it can; `paced_batch_size` (the same when None) in a paced pass."""
        self.keys = keys
        self.schedule = schedule
        self.interval = interval
        self.batch_size = batch_size
        self.paced_batch_size = paced_batch_size or batch_size
        self.concurrency = concurrency
        self.max_rate = max_rate
        self.spread = spread
        self.clock = clock
        # The pass's pace in keys a second (0: none), when the last paced batch started (the batches in flight
        # share it), and when a paced pass starts no more batches.
        self._pace = 0.0
        self._last_start = -math.inf
        self._pass_ends = math.inf
        self._status: ExpiryStatus | None = None
        self._status_seen = 0.0
        self._wake = asyncio.Event()
        self._wake_at: datetime | None = None
        self._hint: datetime | None = None

    def now(self) -> datetime | None:
        """The keys service's clock, as of the last expiry status plus the time elapsed here since."""
        if self._status is None:
            return None
        return self._status.now + timedelta(seconds=self.clock() - self._status_seen)

    def expiry_known(self, expires_at: datetime) -> None:
        """A key expires at `expires_at`: wake earlier than planned if that comes first.

        An expiry the last pass had already reached (an old event replayed, say) needs no wake-up: that pass
        saw the key, if it was still there, in its status.
        """
        if self._status is not None and expires_at <= self._status.now:
            return
        if self._wake_at is None or expires_at < self._wake_at:
            self._hint = expires_at if self._hint is None else min(self._hint, expires_at)
            self._wake.set()

    def oldest_expired_age(self) -> float:
        """Seconds since the oldest key still present expired, from the last status; it keeps growing while
        the keys service cannot be reached, since no one else deletes expired keys."""
        now, status = self.now(), self._status
        if now is None or status is None:
            return 0.0
        known = [t for t in (status.oldest_expired_at, status.next_expiry_at) if t is not None]
        return max(0.0, (now - min(known)).total_seconds()) if known else 0.0

    async def run(self) -> None:
        """Runs until cancelled; a failed pass is retried with backoff, never longer apart than the interval."""
        failures = 0
        while True:
            try:
                wake_at = await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                PASS_FAILURES.inc()
                delay = min(self.interval.total_seconds(), 0.25 * 2 ** min(failures, 10))
                log.warning("reaper pass failed (%d in a row), retrying in %.2fs: %s", failures, delay, exc)
                await asyncio.sleep(delay)
                continue
            failures = 0
            await self.sleep_until(wake_at)

    async def run_pass(self) -> datetime:
        """Reaps every expired key; answers when to wake next."""
        started = self.clock()
        self._wake_at = None  # any expiry learnt from now on counts for the next wake-up
        status = self._recent_backlog() or self._observe(await self.keys.expiry_status())
        began = status.now
        if status.oldest_expired_at is not None:
            # With a spread, a backlog of a batch or less is one call: keys expiring meanwhile may be the start
            # of a mass expiry, and the next pass counts them before it sets a pace.
            once = bool(self.spread) and status.expired <= self.batch_size
            reaped = await self.reap_all(self.pace(status), once=once)
            status = self._observe(await self.keys.expiry_status())
            if reaped:
                log.info("reaped %d expired key(s) in %.3fs", reaped, self.clock() - started)
        # The schedule only plans wake-ups, so entries due by the start of this pass can go: a key that is
        # still there (another replica or the expiry watcher had it locked) shows in `status` instead, and
        # brings the next pass forward.
        await self.schedule.forget_until(began)
        LAST_SUCCESS.set_to_current_time()
        PASS_DURATION.observe(self.clock() - started)
        return self.plan(status, await self.schedule.next_expiry())

    def plan(self, status: ExpiryStatus, scheduled: datetime | None) -> datetime:
        """The next wake-up: the first known expiry, no later than one interval from now."""
        candidates = [status.now + self.interval]
        candidates += [t for t in (scheduled, status.next_expiry_at, status.oldest_expired_at) if t is not None]
        return max(min(candidates), status.now + MIN_PAUSE) if status.oldest_expired_at else min(candidates)

    def pace(self, status: ExpiryStatus) -> float:
        """Keys a second for a pass that starts at `status` (0: as fast as it can).

        A backlog of one batch or less goes at once. A bigger one is spread to be gone `spread` after the
        oldest expired key expired, though never slower than a batch a second (a few thousand keys need no
        spreading); once the spread is past, it goes as fast as it can. REAPER_MAX_RATE caps all of these.
        """
        pace = float(self.max_rate)
        if self.spread and status.oldest_expired_at is not None and status.expired > self.batch_size:
            left = (status.oldest_expired_at + self.spread - status.now).total_seconds()
            if left > 0:
                even = max(status.expired / left, self.batch_size)
                pace = min(pace, even) if pace else even
        return pace

    async def reap_all(self, pace: float | None = None, *, once: bool = False) -> int:
        """One batch (only that one if `once`); while batches come back full, `concurrency` callers drain the
        rest side by side.

        Paced (`pace` keys a second, REAPER_MAX_RATE when not given), batches start no closer together than
        the pace allows, and none after REPLAN_SECONDS past the first: the next pass sets a new pace.
        """
        self._pace = self.max_rate if pace is None else pace
        self._pass_ends = self._next_start() + REPLAN_SECONDS if self._pace else math.inf
        PACE.set(self._pace)
        first = await self._reap_batch()
        if first is None or not first.more or once:
            return first.deleted if first else 0
        async with asyncio.TaskGroup() as group:
            drains = [group.create_task(self._drain()) for _ in range(self.concurrency)]
        return first.deleted + sum(d.result() for d in drains)

    async def sleep_until(self, wake_at: datetime) -> None:
        while True:
            if self._hint is not None:
                wake_at, self._hint = min(wake_at, self._hint), None
            now = self.now()
            delay = (wake_at - now).total_seconds() if now is not None else 0.0
            if delay <= 0:
                return
            self._wake_at = wake_at
            NEXT_WAKE.set(wake_at.timestamp())
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                return

    async def _drain(self) -> int:
        total = 0
        while True:
            result = await self._reap_batch()
            if result is None:
                return total
            total += result.deleted
            if not result.more:
                return total

    async def _reap_batch(self) -> ReapResult | None:
        """One batch; None when the paced pass has no time left for it."""
        if self._pace:
            # Book this batch's start before calling, so concurrent batches space themselves out.
            start = self._next_start()
            if start > self._pass_ends:
                return None
            self._last_start = start
            await asyncio.sleep(start - self.clock())
        result = await self.keys.reap(self._batch())
        BATCHES.inc()
        KEYS_REAPED.inc(result.deleted)
        return result

    def _batch(self) -> int:
        """Paced, each batch sets off a burst of work (the deletion, its events, their consumers) that verify
        waits behind where they share cores, so paced batches are smaller; as fast as it can, the bigger the
        statement the more keys a second."""
        return self.paced_batch_size if self._pace else self.batch_size

    def _next_start(self) -> float:
        """When the next batch may start at the pass's pace."""
        return max(self.clock(), self._last_start + self._batch() / self._pace)

    def _recent_backlog(self) -> ExpiryStatus | None:
        """The last status, brought to now, if it is under STATUS_REUSE_SECONDS old and saw expired keys left."""
        status, now = self._status, self.now()
        if status is None or now is None or status.oldest_expired_at is None:
            return None
        if self.clock() - self._status_seen > STATUS_REUSE_SECONDS:
            return None
        return status.model_copy(update={"now": now})

    def _observe(self, status: ExpiryStatus) -> ExpiryStatus:
        self._status, self._status_seen = status, self.clock()
        EXPIRED_PRESENT.set(status.expired)
        return status
