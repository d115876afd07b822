"""A tenant administrator reaches nothing outside the tenant: not by API, not by page, not by a guessed URL."""

import httpx

from tests.fixtures.directory import Tenant
from tests.fixtures.errors import assert_error
from tests.fixtures.gateway import bearer
from tests.fixtures.keys import create_key


async def test_a_tenant_admin_cannot_reach_another_tenants_key(
    gateway: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    theirs = await create_key(gateway, other_tenant.orgs["org-1"], "Their key", headers=bearer(other_tenant.admins[0]))
    mine = await create_key(gateway, tenant.id, "My key", headers=bearer(tenant.admins[0]))
    headers = bearer(tenant.admins[0])
    url = f"/api/v1/keys/{theirs['id']}"
    other_org = {"organization_id": str(other_tenant.orgs["org-1"])}
    refused = [
        await gateway.get(url, headers=headers),
        await gateway.patch(url, json={"name": "hijacked"}, headers=headers),
        await gateway.delete(url, headers=headers),
        await gateway.post("/api/v1/keys/bulk-delete", json={"ids": [mine["id"], theirs["id"]]}, headers=headers),
        await gateway.get("/api/v1/keys/export.csv", params=other_org, headers=headers),
        await gateway.get("/api/v1/keys", params=other_org, headers=headers),
        await gateway.post("/api/v1/keys", json={"name": "x", **other_org}, headers=headers),
    ]
    for response in refused:
        assert_error(response, 404, "not_found")
        assert theirs["key"] not in response.text and "Their key" not in response.text
    # Nothing leaked, nothing changed: their key is whole, mine survived the refused bulk delete.
    listed = (await gateway.get("/api/v1/keys", params={"q": "key"}, headers=headers)).json()
    assert [k["id"] for k in listed["items"]] == [mine["id"]]
    export = (await gateway.get("/api/v1/keys/export.csv", headers=headers)).text
    assert theirs["key"] not in export and "Their key" not in export
    still = await gateway.get(url, headers=bearer(other_tenant.admins[0]))
    assert still.json()["name"] == "Their key"
    assert (await gateway.get(f"/api/v1/keys/{mine['id']}", headers=headers)).json()["key"] == mine["key"]


async def test_a_guessed_edit_page_url_of_another_tenants_key_is_not_found(
    gateway: httpx.AsyncClient, signed_in, tenant: Tenant, other_tenant: Tenant
):
    theirs = await create_key(gateway, other_tenant.id, "Their secret desk", headers=bearer(other_tenant.admins[0]))
    async with signed_in(tenant.admins[0]) as browser:
        page = await browser.client.get(f"/keys/{theirs['id']}")
        assert page.status_code == 404
        assert theirs["key"] not in page.text and "Their secret desk" not in page.text
        listing = await browser.client.get("/keys")
        assert other_tenant.name not in listing.text
