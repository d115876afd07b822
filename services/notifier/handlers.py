"""Lifecycle event handlers. The consumer stays thin: a batch's effects and its ce_ids commit in one
transaction, then the offset is committed, so a redelivered event (same ce_id) changes nothing. Deletions
record no ce_id: applied twice, they change nothing anyway.

Recording a notice is all the consumer does for an expiring key; the sender loop delivers it.
"""

import itertools
from collections.abc import Awaitable, Callable

import asyncpg

from services.notifier import repository
from services.notifier.metrics import DUPLICATE_EVENTS, NOTICES_RECORDED
from shared.consumer import PermanentError
from shared.events import CloudEvent, KeyDeleted, KeyEventData, KeyExpiring, KeyUpdated


async def record_notices(events: list[CloudEvent], conn: asyncpg.Connection) -> None:
    for event in events:
        data = event.data
        assert isinstance(data, KeyExpiring)
        # A system-level key has no tenant, hence no tenant administrators to tell.
        if data.tenant_id is None or await repository.is_deleted(conn, data.key_id):
            continue
        if await repository.insert_notice(conn, event.id, event.time, data):
            NOTICES_RECORDED.inc()


async def forget_keys(events: list[CloudEvent], conn: asyncpg.Connection) -> None:
    """Deleted keys: a tombstone each, and whatever is still open for them cancelled, in three statements."""
    deleted = [e.data for e in events if isinstance(e.data, KeyDeleted)]
    key_ids, reasons = [d.key_id for d in deleted], [str(d.reason) for d in deleted]
    await repository.add_tombstones(conn, key_ids, reasons)
    await repository.cancel_keys(conn, key_ids, [f"the key was deleted ({r})" for r in reasons])


async def follow_renames(events: list[CloudEvent], conn: asyncpg.Connection) -> None:
    for event in events:
        await repository.rename_key(conn, event.data.key_id, event.data.name)


# A handler takes a run of consecutive events of its type, in their order, on the batch's connection.
Handler = Callable[[list[CloudEvent], asyncpg.Connection], Awaitable[None]]

EVENT_HANDLERS: dict[type[KeyEventData], Handler] = {
    KeyExpiring: record_notices,
    KeyUpdated: follow_renames,
    KeyDeleted: forget_keys,
}


def needs_ledger(event: CloudEvent) -> bool:
    """Whether handling the event twice could differ from once, so that its `ce_id` must be recorded.

    A deletion needs no ledger row: its tombstone and cancellations come out the same however often they
    are applied, and a deleted key never comes back. After a mass expiry that saves a hundred thousand
    rows written (and purged later).
    """
    return not isinstance(event.data, KeyDeleted)


def batch_dispatcher(
    pool: asyncpg.Pool, on_committed: Callable[[], None]
) -> Callable[[list[CloudEvent]], Awaitable[None]]:
    """Events of one partition in one transaction, in their order, each run of one type handed over at once.
    After a mass expiry that is a hundred thousand `deleted` events, and a transaction each kept the
    notifier busy for minutes. Any failure rolls the whole batch back (the consumer then
    hands it to `dispatcher` event by event)."""

    async def handle_many(events: list[CloudEvent]) -> None:
        handled = [e for e in events if type(e.data) in EVENT_HANDLERS]
        if not handled:
            return
        first_of: dict[str, CloudEvent] = {}
        for event in handled:
            first_of.setdefault(event.id, event)  # an event twice in one batch is handled once, as a redelivery
        relevant = list(first_of.values())
        ledgered = [e for e in relevant if needs_ledger(e)]
        async with pool.acquire() as conn, conn.transaction():
            fresh = await repository.mark_processed_many(conn, [e.id for e in ledgered], [e.type for e in ledgered])
            DUPLICATE_EVENTS.inc((len(handled) - len(relevant)) + (len(ledgered) - len(fresh)))
            for data_type, run in itertools.groupby(relevant, key=lambda e: type(e.data)):
                due = [e for e in run if e.id in fresh or not needs_ledger(e)]
                if due:
                    await EVENT_HANDLERS[data_type](due, conn)
        on_committed()

    return handle_many


def dispatcher(pool: asyncpg.Pool, on_committed: Callable[[], None]) -> Callable[[CloudEvent], Awaitable[None]]:
    """One event: a batch of one. A value the database can never store (a NUL in a name, a value out of
    range) is refused for good: retrying never helps."""
    handle_many = batch_dispatcher(pool, on_committed)

    async def handle(event: CloudEvent) -> None:
        try:
            await handle_many([event])
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            raise PermanentError(f"{type(exc).__name__}: {exc}") from exc

    return handle
