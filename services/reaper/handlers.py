"""Lifecycle event handlers: keep the schedule of expiries that tells the reaper when to wake.

`schedule_expiry` is idempotent and keyed by key id, and a partition replays in order, so a redelivered event
changes nothing: no table of seen `ce_id`s is needed. A missed or late event only costs precision; each
pass asks the keys service what has really expired.

`deleted` events are not read at all (the consumer passes them over by their type header). The entry of a
key deleted before it expired stays until that expiry, when it costs one pass that finds nothing and drops
it; the reaper passes at least every REAPER_INTERVAL anyway. Reading them cost a decode per key in a mass
expiry, on the cores verify needs, to save that one pass per manually deleted key.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.reaper.repository import Schedule
from services.reaper.service import Reaper
from shared.events import CloudEvent, KeyCreated, KeyEventData, KeyExpiring, KeyUpdated


@dataclass(frozen=True, slots=True)
class HandlerContext:
    schedule: Schedule
    reaper: Reaper


async def schedule_expiry(event: CloudEvent, ctx: HandlerContext) -> None:
    await ctx.schedule.remember(event.data.key_id, event.data.expires_at)
    ctx.reaper.expiry_known(event.data.expires_at)


Handler = Callable[[CloudEvent, HandlerContext], Awaitable[None]]

# Each of these carries the key's expiry, so a missed `created` is healed by a later event.
EVENT_HANDLERS: dict[type[KeyEventData], Handler] = {
    KeyCreated: schedule_expiry,
    KeyUpdated: schedule_expiry,
    KeyExpiring: schedule_expiry,
}
# The types the consumer decodes; it passes over the others.
HANDLED_TYPES = frozenset(model.type for model in EVENT_HANDLERS)


def dispatcher(ctx: HandlerContext) -> Callable[[CloudEvent], Awaitable[None]]:
    async def handle(event: CloudEvent) -> None:
        handler = EVENT_HANDLERS.get(type(event.data))
        if handler is not None:
            await handler(event, ctx)

    return handle
