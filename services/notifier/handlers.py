"""Lifecycle event handlers. The consumer stays thin: a batch's effects and its ce_ids commit in one
transaction, then the offset is committed, so a redelivered event (same ce_id) changes nothing. Deletions
record no ce_id: applied twice, they change nothing anyway.

Recording a notice is all the consumer does for an expiring key; the sender loop delivers it. Kafka is not
what vouches for a key: before the batch's transaction, the keys service says how each announced key stands
(one call for the batch), and a notice is recorded from that answer, not from the event's text. An `expiring`
event for a key the keys service does not know, or knows in another tenant, is refused for good (it goes to
the dead-letter topic); the keys service unreachable is a failure for now (the event is retried).
"""

import itertools
from collections.abc import Awaitable, Callable, Mapping
from uuid import UUID

import asyncpg

from services.notifier import repository
from services.notifier.digests.service import DigestRule, form_digests
from services.notifier.keys_client import KeysClient, Standing
from services.notifier.metrics import DUPLICATE_EVENTS, NOTICES_RECORDED
from shared.consumer import PermanentError
from shared.events import CloudEvent, KeyDeleted, KeyEventData, KeyExpiring, KeyUpdated

# What the keys service said of the batch's announced keys, by id: the live ones only.
Standings = Mapping[UUID, Standing]


async def record_notices(events: list[CloudEvent], conn: asyncpg.Connection, standings: Standings) -> None:
    for event in events:
        data = event.data
        assert isinstance(data, KeyExpiring)
        # A system-level key has no tenant, hence no tenant administrators to tell.
        if data.tenant_id is None or await repository.is_deleted(conn, data.key_id):
            continue
        notice = vouched(data, standings)
        standing = standings[data.key_id]
        if standing.successor_in_use_since is not None:
            continue  # rolled, and its successor in use: the reminders have done their work
        if await repository.insert_notice(conn, event.id, event.time, notice, replaced_by=standing.replaced_by):
            NOTICES_RECORDED.inc()


def vouched(data: KeyExpiring, standings: Standings) -> KeyExpiring:
    """The event's notice as the keys service says the key stands: its name, organization, display and expiry
    are the keys service's, so that a forged event chooses no text. Refused for good when the key does not
    exist, has expired or been deleted (and the notifier has not heard of it yet), or is another tenant's."""
    standing = standings.get(data.key_id)
    if standing is None:
        raise PermanentError(f"the keys service knows no live key {data.key_id}: the event is forged, or stale")
    if standing.tenant_id != data.tenant_id:
        raise PermanentError(f"key {data.key_id} is not of tenant {data.tenant_id}: the event is forged")
    return KeyExpiring(
        key_id=standing.key_id,
        name=standing.name,
        organization_id=standing.organization_id,
        tenant_id=standing.tenant_id,
        created_by=standing.created_by,
        created_at=standing.created_at,
        expires_at=standing.expires_at,
        key_display=standing.key_display,
        threshold_seconds=data.threshold_seconds,
        days_left=data.days_left,
        organization_names=list(standing.organization_names),
    )


async def forget_keys(events: list[CloudEvent], conn: asyncpg.Connection, _: Standings) -> None:
    """Deleted keys: a tombstone each, and whatever is still open for them cancelled, in three statements."""
    deleted = [e.data for e in events if isinstance(e.data, KeyDeleted)]
    key_ids, reasons = [d.key_id for d in deleted], [str(d.reason) for d in deleted]
    await repository.add_tombstones(conn, key_ids, reasons)
    await repository.cancel_keys(conn, key_ids, [f"the key was deleted ({r})" for r in reasons])


async def follow_renames(events: list[CloudEvent], conn: asyncpg.Connection, standings: Standings) -> None:
    """An open notice takes the key's name as the keys service says it is now (an event's name may be forged);
    a key it no longer knows keeps its notice's name (its deletion cancels the notice)."""
    for event in events:
        standing = standings.get(event.data.key_id)
        if standing is not None and standing.tenant_id == event.data.tenant_id:
            await repository.rename_key(conn, standing.key_id, standing.name)


# A handler takes a run of consecutive events of its type, in their order, on the batch's connection, with
# what the keys service said of the batch's announced keys.
Handler = Callable[[list[CloudEvent], asyncpg.Connection, Standings], Awaitable[None]]

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


async def standings_of(keys: KeysClient, events: list[CloudEvent]) -> Standings:
    """One call for the keys of tenants announced or renamed (a system-level key's event records nothing)."""
    asked = [e.data.key_id for e in events if isinstance(e.data, (KeyExpiring, KeyUpdated)) and e.data.tenant_id]
    return await keys.standings(asked) if asked else {}


def batch_dispatcher(
    pool: asyncpg.Pool, keys: KeysClient, on_committed: Callable[[], None], digest_rule: DigestRule | None = None
) -> Callable[[list[CloudEvent]], Awaitable[None]]:
    """Events of one partition in one transaction, in their order, each run of one type handed over at once.
    After a mass expiry that is a hundred thousand `deleted` events, and a transaction each kept the
    notifier busy for minutes. Any failure rolls the whole batch back (the consumer then
    hands it to `dispatcher` event by event).

    With a `digest_rule`, the announced tenants' notices that fall due together form their digests in the
    same transaction: no sender sees them before, so none is sent on its own."""

    async def handle_many(events: list[CloudEvent]) -> None:
        handled = [e for e in events if type(e.data) in EVENT_HANDLERS]
        if not handled:
            return
        first_of: dict[str, CloudEvent] = {}
        for event in handled:
            first_of.setdefault(event.id, event)  # an event twice in one batch is handled once, as a redelivery
        relevant = list(first_of.values())
        ledgered = [e for e in relevant if needs_ledger(e)]
        # Asked before the transaction, so that no connection waits on the keys service.
        standings = await standings_of(keys, relevant)
        async with pool.acquire() as conn, conn.transaction():
            fresh = await repository.mark_processed_many(conn, [e.id for e in ledgered], [e.type for e in ledgered])
            DUPLICATE_EVENTS.inc((len(handled) - len(relevant)) + (len(ledgered) - len(fresh)))
            for data_type, run in itertools.groupby(relevant, key=lambda e: type(e.data)):
                due = [e for e in run if e.id in fresh or not needs_ledger(e)]
                if due:
                    await EVENT_HANDLERS[data_type](due, conn, standings)
            announced = {e.data.tenant_id for e in relevant if isinstance(e.data, KeyExpiring) and e.data.tenant_id}
            if digest_rule is not None and announced:
                await form_digests(conn, sorted(announced), digest_rule)
        on_committed()

    return handle_many


def dispatcher(
    pool: asyncpg.Pool, keys: KeysClient, on_committed: Callable[[], None], digest_rule: DigestRule | None = None
) -> Callable[[CloudEvent], Awaitable[None]]:
    """One event: a batch of one. A value the database can never store (a NUL in a name, a value out of
    range) is refused for good: retrying never helps. So is an event the keys service does not vouch for
    (`vouched`); the keys service unreachable (`KeysUnavailable`) is retried."""
    handle_many = batch_dispatcher(pool, keys, on_committed, digest_rule)

    async def handle(event: CloudEvent) -> None:
        try:
            await handle_many([event])
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            raise PermanentError(f"{type(exc).__name__}: {exc}") from exc

    return handle
