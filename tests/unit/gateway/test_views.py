from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.gateway.live_stream import QUEUE_SIZE, Subscriber, browser_message
from services.gateway.schemas import flatten, organization_tree
from services.gateway.views import day, days_left, threshold
from shared.events import CloudEvent, KeyCreated


def org(name: str, parent: str | None) -> dict:
    return {"id": name, "name": name, "parent_id": parent}


def test_the_flat_organization_list_becomes_a_sorted_tree_rooted_at_what_the_caller_reaches():
    tree = organization_tree([org("tenant", "root-not-visible"), org("b", "tenant"), org("A", "tenant"), org("c", "b")])
    assert [n["name"] for n in tree] == ["tenant"]
    assert [n["name"] for n in tree[0]["children"]] == ["A", "b"]
    assert [(depth, n["name"]) for depth, n in flatten(tree)] == [(0, "tenant"), (1, "A"), (1, "b"), (2, "c")]


def event(tenant_id: object) -> CloudEvent:
    now = datetime.now(UTC)
    return CloudEvent.of(
        KeyCreated(
            key_id=uuid4(),
            name="k",
            organization_id=uuid4(),
            tenant_id=tenant_id,
            created_by="ada",
            created_at=now,
            expires_at=now,
            key_display="kwk_abcd…wxyz",
        )
    )


def test_a_tenant_subscriber_sees_only_its_tenants_events_and_a_system_one_sees_all():
    mine, other = uuid4(), uuid4()
    tenant = Subscriber(system=False, tenant_id=mine)
    system = Subscriber(system=True, tenant_id=None)
    assert tenant.may_see(event(mine)) and not tenant.may_see(event(other)) and not tenant.may_see(event(None))
    assert system.may_see(event(other)) and system.may_see(event(None))


def test_a_browser_message_carries_no_key_material():
    message = browser_message(event(uuid4()))
    assert set(message) == {"type", "key_id", "organization_id", "name"}
    assert message["type"] == "created"


def test_a_subscriber_that_falls_behind_is_told_to_resync_instead_of_growing_without_bound():
    subscriber = Subscriber(system=True, tenant_id=None)
    for _ in range(QUEUE_SIZE + 5):
        subscriber.offer({"type": "created"})
    assert subscriber.queue.qsize() <= QUEUE_SIZE
    assert {"type": "resync"} in list(subscriber.queue._queue)  # type: ignore[attr-defined]


def test_dates_and_thresholds_read_as_the_list_shows_them():
    assert day("2027-03-04T23:30:00+00:00") == "2027-03-04"
    assert days_left(datetime.now(UTC) + timedelta(days=2, hours=1)) == 3
    assert days_left(datetime.now(UTC) - timedelta(days=1)) == 0
    assert threshold(86400 * 30) == "30 days before"
    assert threshold(86400) == "1 day before"
    assert threshold(30) == "30s before"
