"""Lifecycle event handlers. The consumer stays thin: each event's effects and its ce_id commit in one
transaction, then the offset is committed, so a redelivered event (same ce_id) changes nothing.

Recording a notice is all the consumer does for an expiring key; the sender loop delivers it.
"""

from collections.abc import Awaitable, Callable

import asyncpg

from services.notifier import repository
from services.notifier.metrics import DUPLICATE_EVENTS, NOTICES_RECORDED
from shared.consumer import PermanentError
from shared.events import CloudEvent, KeyDeleted, KeyEventData, KeyExpiring, KeyUpdated


async def record_notice(event: CloudEvent, conn: asyncpg.Connection) -> None:
    data = event.data
    assert isinstance(data, KeyExpiring)
    # A system-level key has no tenant, hence no tenant administrators to tell.
    if data.tenant_id is None or await repository.is_deleted(conn, data.key_id):
        return
    if await repository.insert_notice(conn, event.id, event.time, data):
        NOTICES_RECORDED.inc()


async def forget_key(event: CloudEvent, conn: asyncpg.Connection) -> None:
    data = event.data
    assert isinstance(data, KeyDeleted)
    await repository.add_tombstone(conn, data.key_id, data.reason)
    await repository.cancel_key(conn, data.key_id, f"the key was deleted ({data.reason})")


async def follow_rename(event: CloudEvent, conn: asyncpg.Connection) -> None:
    await repository.rename_key(conn, event.data.key_id, event.data.name)


Handler = Callable[[CloudEvent, asyncpg.Connection], Awaitable[None]]

EVENT_HANDLERS: dict[type[KeyEventData], list[Handler]] = {
    KeyExpiring: [record_notice],
    KeyDeleted: [forget_key],
    KeyUpdated: [follow_rename],
}


def dispatcher(pool: asyncpg.Pool, on_committed: Callable[[], None]) -> Callable[[CloudEvent], Awaitable[None]]:
    async def handle(event: CloudEvent) -> None:
        handlers = EVENT_HANDLERS.get(type(event.data))
        if not handlers:
            return
        try:
            async with pool.acquire() as conn, conn.transaction():
                if not await repository.mark_processed(conn, event.id, event.type):
                    DUPLICATE_EVENTS.inc()
                    return
                for handler in handlers:
                    await handler(event, conn)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            # The event itself cannot be stored (a NUL in a name, a value out of range): retrying never helps.
            raise PermanentError(f"{type(exc).__name__}: {exc}") from exc
        on_committed()

    return handle
