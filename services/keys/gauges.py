"""Gauges read from the database, kept current on every replica whether or not it relays or Kafka answers."""

import asyncio
import logging

import asyncpg

from services.keys import repository
from services.keys.metrics import KEYS_STORED, OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE
from services.keys.outbox import repository as outbox

log = logging.getLogger(__name__)


async def observe(pool: asyncpg.Pool, interval: float = 5.0) -> None:
    while True:
        try:
            async with pool.acquire() as conn:
                row = await outbox.outbox_backlog(conn)
                stored = await repository.keys_stored(conn)
                await repository.forget_expired_claims(conn)
            OUTBOX_BACKLOG.set(row["backlog"])
            OUTBOX_OLDEST_AGE.set(float(row["oldest_age"]))
            KEYS_STORED.set(stored)
        except Exception:
            log.warning("could not read the outbox backlog and the key count", exc_info=True)
        await asyncio.sleep(interval)
