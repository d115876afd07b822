"""The expiry watcher: announces each key once per notice threshold, through the outbox."""

import asyncio
import logging
import time
from datetime import timedelta

import asyncpg

from services.keys import events, repository
from services.keys.metrics import EXPIRING_ANNOUNCED, WATCHER_LAST_RUN
from services.keys.outbox import repository as outbox

log = logging.getLogger(__name__)

BATCH = 1000


async def announce_once(pool: asyncpg.Pool, thresholds: list[int], topic: str) -> int:
    """One pass: every key that crossed a threshold gets its event; returns how many were announced."""
    announced = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await repository.announce_expiring(conn, thresholds, BATCH)
            announced_events = [events.expiring(row) for row in rows]
            if announced_events:
                await outbox.add_events(conn, topic, announced_events)
        for row in rows:
            EXPIRING_ANNOUNCED.labels(str(row["threshold"])).inc()
        announced += len(rows)
        if len(rows) < BATCH:
            return announced


async def watch(pool: asyncpg.Pool, thresholds: tuple[timedelta, ...], interval: timedelta, topic: str) -> None:
    seconds = [int(t.total_seconds()) for t in thresholds]
    while True:
        started = time.monotonic()
        try:
            count = await announce_once(pool, seconds, topic)
            WATCHER_LAST_RUN.set_to_current_time()
            if count:
                log.info("expiry watcher announced %d key(s)", count)
        except Exception:
            log.warning("expiry watcher pass failed; retrying next interval", exc_info=True)
        await asyncio.sleep(max(0.0, interval.total_seconds() - (time.monotonic() - started)))
