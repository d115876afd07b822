"""A key's whole life in a minute: KEY_LIFETIME=60s, EXPIRY_NOTICE_THRESHOLDS=30s,14s,7s,3s,1s."""

import os
from datetime import UTC, datetime

import httpx

from shared.auth import parse_service_tokens
from tests.fixtures.keys import Caller, create_key
from tests.fixtures.mail import Sink, email_of
from tests.fixtures.notifier import Notifier
from tests.fixtures.processes import ServiceProcess
from tests.fixtures.random_refs import key_name
from tests.fixtures.waiting import stays_true


async def test_each_tenant_administrator_gets_exactly_the_five_notices_in_order_and_nobody_else_any(
    nf_keys: ServiceProcess, notifier: Notifier, sink: Sink, make_tenant, nf_root
):
    tenant = await make_tenant(admins=3)
    other = await make_tenant(admins=2)
    async with httpx.AsyncClient(base_url=nf_keys.url) as client:
        keys_token = parse_service_tokens(os.environ["SERVICE_TOKENS"])["gateway"]
        admin = Caller(client, tenant.admins[0], os.environ["ACTING_ADMIN_SECRET"], keys_token)
        key = await create_key(admin, tenant.orgs["org-2"], key_name("voice"))
    expires_at = datetime.fromisoformat(key["expires_at"])
    assert (expires_at - datetime.fromisoformat(key["created_at"])).total_seconds() == 60

    mine = {email_of(a) for a in tenant.admins}
    outsiders = {email_of(a) for a in other.admins} | {email_of(nf_root[1])}
    await sink.wait_for(lambda: all(len(sink.to(a, key["id"])) == 5 for a in mine), timeout=80)

    def nothing_more() -> bool:
        return len(sink.about(key["id"])) == 5 * len(mine) and not outsiders & {m.rcpt_tos[0] for m in sink.all()}

    # Until the key has expired and a watcher pass after that: no sixth notice, nothing to anyone else.
    await stays_true(nothing_more, for_seconds=max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 1.5)

    for address in mine:
        received = sink.to(address, key["id"])
        assert [m.threshold for m in received] == [30, 14, 7, 3, 1]
        assert all(key["name"] in m.message["Subject"] for m in received)
        assert all(key["organization_name"] in m.message["Subject"] for m in received)
    assert {m.rcpt_tos[0] for m in sink.about(key["id"])} == mine
    assert not outsiders & {m.rcpt_tos[0] for m in sink.all()}
