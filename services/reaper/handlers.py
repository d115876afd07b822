"""Lifecycle event handlers: keep the schedule of expiries that tells the reaper when to wake.

Both handlers are idempotent and keyed by key id, and a partition replays in order, so a redelivered event
changes nothing: no table of seen `ce_id`s is needed. A missed or late event only costs precision; each
pass asks the keys service what has really expired.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.reaper.repository import Schedule
from services.reaper.service import Reaper
from shared.events import CloudEvent, KeyCreated, KeyDeleted, KeyEventData, KeyExpiring, KeyUpdated


@dataclass(frozen=True, slots=True)
class HandlerContext:
    schedule: Schedule
    reaper: Reaper


async def schedule_expiry(event: CloudEvent, ctx: HandlerContext) -> None:
    await ctx.schedule.remember(event.data.key_id, event.data.expires_at)
    ctx.reaper.expiry_known(event.data.expires_at)


async def forget_key(event: CloudEvent, ctx: HandlerContext) -> None:
    # A key deleted because it expired was deleted by a pass, and that pass forgets every entry due by its
    # start in one statement; forgetting each here too meant one statement per key after a mass expiry,
    # competing with the reaping for the database and the CPU.
    if isinstance(event.data, KeyDeleted) and event.data.reason == "expired":
        return
    await ctx.schedule.forget(event.data.key_id)


Handler = Callable[[CloudEvent, HandlerContext], Awaitable[None]]

# Every event but `deleted` carries the key's expiry, so a missed `created` is healed by a later event.
EVENT_HANDLERS: dict[type[KeyEventData], list[Handler]] = {
    KeyCreated: [schedule_expiry],
    KeyUpdated: [schedule_expiry],
    KeyExpiring: [schedule_expiry],
    KeyDeleted: [forget_key],
}


def dispatcher(ctx: HandlerContext) -> Callable[[CloudEvent], Awaitable[None]]:
    async def handle(event: CloudEvent) -> None:
        for handler in EVENT_HANDLERS.get(type(event.data), []):
            await handler(event, ctx)

    return handle
