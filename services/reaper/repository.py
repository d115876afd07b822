"""Every SQL statement of the reaper: its schedule of expiries, fed by the lifecycle events."""

from datetime import datetime
from uuid import UUID

import asyncpg


class Schedule:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def remember(self, key_id: UUID, expires_at: datetime) -> None:
        await self.pool.execute(
            """
            INSERT INTO reaper.schedule (key_id, expires_at) VALUES ($1, $2)
            ON CONFLICT (key_id) DO UPDATE SET expires_at = EXCLUDED.expires_at, updated_at = now()
            WHERE reaper.schedule.expires_at IS DISTINCT FROM EXCLUDED.expires_at
            """,
            key_id,
            expires_at,
        )

    async def next_expiry(self) -> datetime | None:
        return await self.pool.fetchval("SELECT min(expires_at) FROM reaper.schedule")

    async def forget_until(self, until: datetime, limit: int = 10000) -> int:
        """Drops entries expired by `until`: the keys service has reaped every such key by now."""
        total = 0
        while True:
            # Bounded statements, so a million entries expiring together never make one long transaction.
            status = await self.pool.execute(
                """
                DELETE FROM reaper.schedule WHERE key_id IN (
                    SELECT key_id FROM reaper.schedule WHERE expires_at <= $1 LIMIT $2
                )
                """,
                until,
                limit,
            )
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < limit:
                return total

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")
