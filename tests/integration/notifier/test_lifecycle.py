"""A key's whole life in a minute: KEY_LIFETIME=60s, EXPIRY_NOTICE_THRESHOLDS=30s,14s,7s,3s,1s."""

import asyncio
import os
from datetime import UTC, datetime

import httpx

from shared.auth import sign_acting_admin
from tests.fixtures.processes import ServiceProcess
from tests.fixtures.random_refs import key_name
from tests.integration.notifier.conftest import Notifier, Sink, email_of


async def test_each_tenant_administrator_gets_exactly_the_five_notices_in_order_and_nobody_else_any(
    nf_keys: ServiceProcess, notifier: Notifier, sink: Sink, make_tenant, nf_root, gateway_token: str
):
    tenant = await make_tenant(admins=3)
    other = await make_tenant(admins=2)
    claim = sign_acting_admin(
        tenant.admins[0], secret=os.environ["ACTING_ADMIN_SECRET"], issuer="gateway", audience="keys"
    )
    async with httpx.AsyncClient(base_url=nf_keys.url) as keys:
        response = await keys.post(
            "/v1/keys",
            json={"name": key_name("voice"), "organization_id": str(tenant.orgs["org-2"])},
            headers={"Authorization": f"Bearer {gateway_token}", "X-Acting-Admin": claim},
        )
    assert response.status_code == 201, response.text
    key = response.json()
    expires_at = datetime.fromisoformat(key["expires_at"])
    assert (expires_at - datetime.fromisoformat(key["created_at"])).total_seconds() == 60

    mine = {email_of(a) for a in tenant.admins}
    await sink.wait_for(lambda: all(len(sink.to(a, key["id"])) == 5 for a in mine), timeout=80)
    await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 1.5)

    for address in mine:
        received = sink.to(address, key["id"])
        assert [m.threshold for m in received] == [30, 14, 7, 3, 1]
        assert all(key["name"] in m.message["Subject"] for m in received)
        assert all(key["organization_name"] in m.message["Subject"] for m in received)
    outsiders = {email_of(a) for a in other.admins} | {email_of(nf_root[1])}
    assert {m.rcpt_tos[0] for m in sink.about(key["id"])} == mine
    assert not outsiders & {m.rcpt_tos[0] for m in sink.all()}
