"""An expiring event becomes one e-mail per tenant customer administrator, as the directory stands."""

import asyncio
from datetime import timedelta

import httpx

from shared.events import CloudEvent, KeyExpiring
from tests.fixtures.directory import create_admin
from tests.fixtures.events import Publisher, expiring, key_fields
from tests.fixtures.mail import Sink, email_of
from tests.fixtures.notifier import Notifier, notices, wait_for_notices
from tests.fixtures.waiting import stays_true


async def test_each_tenant_administrator_gets_one_email_naming_the_key_and_its_organization(
    publish: Publisher, sink: Sink, make_tenant, make_key, notices_api: httpx.AsyncClient, nf_pool
):
    tenant = await make_tenant(admins=3)
    fields = await make_key(tenant, name="Front desk", days=7)
    await publish.event(expiring(fields, 7))
    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) == 3)
    org = await nf_pool.fetchval("SELECT name FROM keys.organizations WHERE id = $1", fields["organization_id"])
    for admin in tenant.admins:
        (received,) = sink.to(email_of(admin), fields["key_id"])
        message = received.message
        assert message["Subject"] == f'[Keyward] API key "Front desk" of {org} expires in 7 days'
        assert message["Message-ID"].startswith("<expiry.")
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        for body in (text, html):
            assert f"{tenant.name} / {org}" in body
            assert f"https://console.keyward.test/keys/{fields['key_id']}" in body
            assert tenant.admins[0] in body
    items = await wait_for_notices(
        notices_api, fields["key_id"], lambda items: all(i["status"] == "sent" for i in items)
    )
    assert sorted(i["recipient"] for i in items) == sorted(email_of(a) for a in tenant.admins)
    assert {i["threshold"] for i in items} == {"7d"}


async def test_the_email_says_what_the_keys_service_says_of_the_key_not_what_the_event_says(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_pool
):
    """An `expiring` event's text is not believed: the name, display, expiry and organizations are the keys
    service's, so a forged event for a real key chooses no word of the e-mail."""
    tenant = await make_tenant(admins=1)
    fields = await make_key(tenant, name="Front desk", days=3)
    forged = fields | {
        "name": "Pay the renewal at evil.example",
        "key_display": "kw_live_evil…evil",
        "expires_at": fields["expires_at"] - timedelta(days=2),
    }
    event = CloudEvent.of(
        KeyExpiring(**forged, threshold_seconds=3 * 86400, days_left=1, organization_names=["Acme Corp", "Evil Desk"])
    )
    await publish.event(event)
    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) == 1)
    (received,) = sink.about(fields["key_id"])
    org = await nf_pool.fetchval("SELECT name FROM keys.organizations WHERE id = $1", fields["organization_id"])
    text = received.message.get_body(("plain",)).get_content()
    assert received.message["Subject"] == f'[Keyward] API key "Front desk" of {org} expires in 3 days'
    assert f"{tenant.name} / {org}" in text and fields["key_display"] in text
    for forged_text in ("evil", "Acme Corp"):
        assert forged_text not in text and forged_text not in received.message["Subject"]


async def test_the_service_reports_ready_and_exports_its_metrics(notifier: Notifier):
    async with httpx.AsyncClient(base_url=notifier.url) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "smtp": "ok", "keys": "ok", "kafka": "ok"}
        metrics = (await client.get("/metrics")).text
    for name in (
        "keyward_notifier_emails_sent_total",
        "keyward_notifier_send_duration_seconds",
        "keyward_notifier_ledger_open_deliveries",
        "keyward_consumer_lag",
    ):
        assert name in metrics


async def test_the_recipients_are_the_directory_as_it_stands_when_the_email_is_sent(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_pool
):
    tenant = await make_tenant(admins=2)
    staying, leaving = tenant.admins
    fields = await make_key(tenant, days=14)
    await publish.event(expiring(fields, 14))
    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) == 2)

    async with nf_pool.acquire() as conn:
        await conn.execute("DELETE FROM keys.administrators WHERE username = $1", leaving)
        newcomer = await create_admin(conn, tenant.id)
        # An administrator without the customer administrator role is not a recipient.
        other_role = await create_admin(conn, tenant.id, role="administrator")
    await asyncio.sleep(1.2)  # RECIPIENTS_CACHE_TTL=1s in this world
    await publish.event(expiring(fields, 7))
    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) == 4)
    await stays_true(lambda: len(sink.about(fields["key_id"])) == 4, for_seconds=0.5)  # none to the other role

    assert [m.threshold for m in sink.to(email_of(staying), fields["key_id"])] == [14 * 86400, 7 * 86400]
    assert [m.threshold for m in sink.to(email_of(leaving), fields["key_id"])] == [14 * 86400]
    assert [m.threshold for m in sink.to(email_of(newcomer), fields["key_id"])] == [7 * 86400]
    assert sink.to(email_of(other_role), fields["key_id"]) == []


async def test_a_system_level_key_emails_nobody(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_pool, nf_root, notices_api: httpx.AsyncClient
):
    tenant = await make_tenant(admins=1)
    system_key = key_fields(tenant) | {"organization_id": nf_root[0], "tenant_id": None}
    await publish.event(expiring(system_key, 30))
    sentinel = await make_key(tenant)
    # Same partition as the system key (keyed by its organization id), so it is consumed after it.
    await publish.event(CloudEvent.of(KeyExpiring(**sentinel, threshold_seconds=30 * 86400, days_left=30)))
    await sink.wait_for(lambda: len(sink.about(sentinel["key_id"])) == 1)
    assert sink.about(system_key["key_id"]) == []
    assert await notices(notices_api, system_key["key_id"]) == []


async def test_a_hostile_key_name_neither_adds_a_header_nor_markup(
    publish: Publisher, sink: Sink, make_tenant, make_key
):
    tenant = await make_tenant(admins=1)
    hostile = '<script>alert("x")</script>\r\nBcc: victim@example.org\r\n\r\n<img src=x onerror=alert(1)>'
    fields = await make_key(tenant, name=hostile, days=3)
    await publish.event(expiring(fields, 3))
    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) == 1)
    (received,) = sink.about(fields["key_id"])
    message = received.message
    assert received.rcpt_tos == [email_of(tenant.admins[0])]
    assert message["Bcc"] is None
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    assert message["Subject"].startswith('[Keyward] API key "<script>alert("x")</script> Bcc: victim@example.org')
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
