"""last_used_at without a write per verification: remembered in memory, written in one statement a tick."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

log = logging.getLogger(__name__)

Flush = Callable[[list[UUID], list[datetime]], Awaitable[None]]


class UsageRecorder:
    def __init__(self) -> None:
        self._pending: dict[UUID, datetime] = {}

    def touch(self, key_id: UUID, at: datetime) -> None:
        self._pending[key_id] = at

    async def flush(self, write: Flush) -> int:
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        try:
            await write(list(batch), list(batch.values()))
        except Exception:
            # Put them back (newer touches win) so a database hiccup loses nothing.
            for key_id, at in batch.items():
                self._pending.setdefault(key_id, at)
            raise
        return len(batch)

    async def run(self, write: Flush, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush(write)
            except Exception:
                log.warning("could not record key usage; will retry", exc_info=True)
