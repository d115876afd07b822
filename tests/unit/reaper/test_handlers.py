from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.reaper.handlers import HANDLED_TYPES, HandlerContext, dispatcher
from shared.events import CloudEvent, KeyCreated, KeyDeleted, KeyExpiring, KeyUpdated

NOW = datetime(2030, 1, 1, tzinfo=UTC)


class FakeSchedule:
    def __init__(self) -> None:
        self.entries: dict[object, datetime] = {}

    async def remember(self, key_id, expires_at):
        self.entries[key_id] = expires_at


class FakeReaper:
    def __init__(self) -> None:
        self.known: list[datetime] = []

    def expiry_known(self, expires_at: datetime) -> None:
        self.known.append(expires_at)


def fields(key_id, expires_at=NOW + timedelta(days=365)):
    return {
        "key_id": key_id,
        "name": "Front desk",
        "organization_id": uuid4(),
        "tenant_id": uuid4(),
        "created_by": "alice",
        "created_at": NOW,
        "expires_at": expires_at,
        "key_display": "kwk_ab...yz",
    }


async def test_created_and_later_events_schedule_the_expiry():
    schedule, reaper = FakeSchedule(), FakeReaper()
    handle = dispatcher(HandlerContext(schedule, reaper))  # type: ignore[arg-type]
    key_id = uuid4()
    await handle(CloudEvent.of(KeyCreated(**fields(key_id))))
    assert schedule.entries == {key_id: NOW + timedelta(days=365)}
    assert reaper.known == [NOW + timedelta(days=365)]
    await handle(CloudEvent.of(KeyUpdated(**fields(key_id), previous_name="Old")))
    await handle(CloudEvent.of(KeyExpiring(**fields(key_id), threshold_seconds=86400, days_left=1)))
    assert schedule.entries == {key_id: NOW + timedelta(days=365)}


async def test_a_redelivered_event_changes_nothing():
    schedule = FakeSchedule()
    handle = dispatcher(HandlerContext(schedule, FakeReaper()))  # type: ignore[arg-type]
    created = CloudEvent.of(KeyCreated(**fields(uuid4())))
    for event in (created, created):  # a partition replayed from an earlier offset
        await handle(event)
    assert schedule.entries == {created.data.key_id: created.data.expires_at}


def test_deleted_events_are_not_read():
    # A manually deleted key's entry stays until its expiry, when a pass drops it; an expired one's goes with
    # the pass that reaped it. Neither is worth decoding a hundred thousand `deleted` events in a mass expiry.
    assert KeyDeleted.type not in HANDLED_TYPES
    assert {KeyCreated.type, KeyUpdated.type, KeyExpiring.type} == HANDLED_TYPES
