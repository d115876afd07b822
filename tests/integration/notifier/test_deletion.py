"""A key deleted before its e-mails went out gets no more e-mails."""

import httpx

from tests.fixtures.events import Publisher, deleted, expiring
from tests.fixtures.mail import Sink, email_of
from tests.fixtures.notifier import notices, wait_for_notices


async def test_a_key_deleted_before_its_seven_day_notice_gets_no_more_emails(
    publish: Publisher, sink: Sink, make_tenant, make_key, notices_api: httpx.AsyncClient
):
    tenant = await make_tenant(admins=2)
    fields = await make_key(tenant)
    await publish.event(expiring(fields, 30))
    await publish.event(expiring(fields, 14))
    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) == 4)

    await publish.event(deleted(fields))
    await publish.event(expiring(fields, 7))
    # Events of one tenant are consumed in order: once this one is e-mailed, the 7-day notice was handled.
    sentinel = await make_key(tenant)
    await publish.event(expiring(sentinel, 30))
    await sink.wait_for(lambda: len(sink.about(sentinel["key_id"])) == 2)

    for admin in tenant.admins:
        # Exactly one e-mail per threshold; the sender works several notices at once, so in no set order.
        assert sorted(m.threshold // 86400 for m in sink.to(email_of(admin), fields["key_id"])) == [14, 30]
    assert {i["threshold"] for i in await notices(notices_api, fields["key_id"])} == {"30d", "14d"}


async def test_a_key_deleted_while_its_emails_wait_for_the_smtp_server_gets_none(
    publish: Publisher, sink: Sink, make_tenant, make_key, notices_api: httpx.AsyncClient
):
    tenant = await make_tenant(admins=2)
    fields = await make_key(tenant, days=7)
    sink.stop()
    await publish.event(expiring(fields, 7))
    await wait_for_notices(
        notices_api, fields["key_id"], lambda items: len(items) == 2 and all(i["attempts"] >= 1 for i in items)
    )
    await publish.event(deleted(fields))
    items = await wait_for_notices(
        notices_api, fields["key_id"], lambda items: all(i["status"] == "cancelled" for i in items)
    )
    assert all("deleted" in i["last_error"] for i in items)

    sink.start()
    sentinel = await make_key(tenant)
    await publish.event(expiring(sentinel, 30))
    await sink.wait_for(lambda: len(sink.about(sentinel["key_id"])) == 2)
    assert sink.about(fields["key_id"]) == []
