"""Tenant-level administrators reach their tenant's subtree only; everything else answers 404."""

from uuid import UUID, uuid4

import pytest

from shared.auth import parse_service_tokens
from tests.fixtures.directory import Tenant, create_admin
from tests.fixtures.errors import assert_error
from tests.fixtures.keys import create_key


@pytest.fixture
async def foreign_key(as_admin, other_tenant: Tenant):
    return await create_key(as_admin(other_tenant.admins[0]), other_tenant.orgs["org-1"])


async def test_a_tenant_admin_gets_404_on_another_tenants_key_for_every_call(as_admin, tenant: Tenant, foreign_key):
    me = as_admin(tenant.admins[0])
    key_id = foreign_key["id"]
    org_id = foreign_key["organization_id"]
    calls = [
        await me.get(f"/v1/keys/{key_id}"),
        await me.patch(f"/v1/keys/{key_id}", json={"name": "mine now"}),
        await me.delete(f"/v1/keys/{key_id}"),
        await me.post("/v1/keys/bulk-delete", json={"ids": [key_id]}),
        await me.get("/v1/keys", params={"organization_id": org_id}),
        await me.get("/v1/keys/export.csv", params={"organization_id": org_id}),
        await me.post("/v1/keys", json={"name": "sneaky", "organization_id": org_id}),
        await me.post("/v1/organizations", json={"name": "sneaky", "parent_id": org_id}),
        await me.get("/v1/administrators", params={"organization_id": org_id}),
        await me.post(
            "/v1/administrators",
            json={
                "username": "sneaky",
                "email": "s@example.com",
                "display_name": "S",
                "level": "tenant",
                "organization_id": org_id,
            },
        ),
    ]
    assert [r.status_code for r in calls] == [404] * len(calls)
    assert all(r.json()["error"]["code"] == "not_found" for r in calls)
    still = await as_admin(foreign_key["created_by"]).get(f"/v1/keys/{key_id}")
    assert still.json()["name"] == foreign_key["name"]


async def test_a_tenant_admin_neither_sees_nor_counts_another_tenants_keys(as_admin, tenant: Tenant, foreign_key):
    me = as_admin(tenant.admins[0])
    mine = await create_key(me, tenant.id)
    listing = (await me.get("/v1/keys", params={"limit": 500})).json()
    ids = {k["id"] for k in listing["items"]}
    assert mine["id"] in ids and foreign_key["id"] not in ids
    assert listing["total"] == len(ids)
    search = (await me.get("/v1/keys", params={"q": foreign_key["name"]})).json()
    assert search == {"items": [], "next_cursor": None, "total": 0, "total_exact": True}
    orgs = {o["id"] for o in (await me.get("/v1/organizations")).json()}
    assert foreign_key["organization_id"] not in orgs and str(tenant.id) in orgs
    export = (await me.get("/v1/keys/export.csv")).text
    assert foreign_key["key"] not in export and mine["key"] in export


async def test_a_system_admin_reaches_every_tenant(as_admin, world, tenant: Tenant, foreign_key):
    admin = as_admin(world.system_admin)
    assert (await admin.get(f"/v1/keys/{foreign_key['id']}")).json()["key"] == foreign_key["key"]
    orgs = {o["id"] for o in (await admin.get("/v1/organizations")).json()}
    assert {str(tenant.id), foreign_key["organization_id"]} <= orgs


async def test_an_administrator_without_the_customer_role_cannot_manage_keys(as_admin, pool, tenant: Tenant):
    async with pool.acquire() as conn:
        viewer = await create_admin(conn, tenant.id, role="administrator")
    assert_error(await as_admin(viewer).get("/v1/keys"), 403, "forbidden")
    response = await as_admin(viewer).post("/v1/keys", json={"name": "x", "organization_id": str(tenant.id)})
    assert_error(response, 403, "forbidden")
    assert await pool.fetchval("SELECT count(*) FROM keys.api_keys WHERE tenant_id = $1", tenant.id) == 0


async def test_calls_without_a_valid_service_token_or_acting_claim_are_401(http, as_admin, tenant: Tenant, settings):
    assert_error(await http.get("/v1/keys"), 401, "unauthorized")
    wrong_token = await http.get("/v1/keys", headers={"Authorization": "Bearer wrong-token-wrong-token"})
    assert_error(wrong_token, 401, "unauthorized")
    no_claim = as_admin(None)
    assert_error(await no_claim.get("/v1/keys"), 401, "unauthorized")
    from shared.auth import sign_acting_admin

    forged = sign_acting_admin(
        tenant.admins[0], secret="x" * 40, issuer="gateway", audience="keys", method="GET", path="/v1/keys"
    )
    assert_error(await no_claim.get("/v1/keys", headers={"X-Acting-Admin": forged}), 401, "unauthorized")
    # A claim minted for another service must not be accepted with the gateway's token.
    wrong_issuer = sign_acting_admin(
        tenant.admins[0],
        secret=settings.acting_admin_secret,
        issuer="notifier",
        audience="keys",
        method="GET",
        path="/v1/keys",
    )
    assert_error(await no_claim.get("/v1/keys", headers={"X-Acting-Admin": wrong_issuer}), 401, "unauthorized")
    unknown = sign_acting_admin(
        "nobody-at-all",
        secret=settings.acting_admin_secret,
        issuer="gateway",
        audience="keys",
        method="GET",
        path="/v1/keys",
    )
    assert_error(await no_claim.get("/v1/keys", headers={"X-Acting-Admin": unknown}), 401, "unauthorized")


async def test_tenant_admins_build_their_own_subtree_and_admins(as_admin, tenant: Tenant, world, pool):
    me = as_admin(tenant.admins[0])
    response = await me.post("/v1/organizations", json={"name": "Night shift", "parent_id": str(tenant.orgs["org-2"])})
    assert response.status_code == 201
    created = response.json()
    assert created["tenant_id"] == str(tenant.id) and created["level"] == "organization" and created["depth"] == 4
    dup = await me.post("/v1/organizations", json={"name": "night SHIFT", "parent_id": str(tenant.orgs["org-2"])})
    assert_error(dup, 409, "conflict", {"name": "already taken"})
    body = {
        "username": f"new-{created['id'][:8]}",
        "email": "new@example.com",
        "display_name": "New",
        "level": "tenant",
        "organization_id": created["id"],
    }
    admin = await me.post("/v1/administrators", json=body)
    assert admin.status_code == 201, admin.text
    assert (admin.json()["username"], admin.json()["organization_id"]) == (body["username"], created["id"])
    assert_error(await me.post("/v1/administrators", json=body), 409, "conflict", {"username": "already taken"})
    system = {**body, "username": "x" + body["username"], "level": "system", "organization_id": str(world.root_id)}
    refused = await me.post("/v1/administrators", json=system)
    assert (refused.status_code, refused.json()["error"]["code"]) in ((403, "forbidden"), (404, "not_found"))
    assert await pool.fetchval("SELECT count(*) FROM keys.administrators WHERE username = $1", system["username"]) == 0
    bad = await me.post("/v1/administrators", json={**body, "email": "not-an-email"})
    assert "email" in assert_error(bad, 422, "validation_failed")["fields"]
    listed = (await me.get("/v1/administrators", params={"organization_id": created["id"]})).json()
    assert [a["username"] for a in listed] == [body["username"]]


def claim(settings, username: str, method: str, path: str) -> str:
    from shared.auth import sign_acting_admin

    return sign_acting_admin(
        username, secret=settings.acting_admin_secret, issuer="gateway", audience="keys", method=method, path=path
    )


async def test_a_captured_claim_is_refused_when_replayed_or_used_on_another_call(
    http, as_admin, settings, tenant: Tenant, pool
):
    """X-Acting-Admin names the method and path it was signed for, and is accepted once."""
    gateway = as_admin(None)
    key = await create_key(as_admin(tenant.admins[0]), tenant.id)
    captured = claim(settings, tenant.admins[0], "GET", f"/v1/keys/{key['id']}")
    first = await gateway.get(f"/v1/keys/{key['id']}", headers={"X-Acting-Admin": captured})
    assert first.status_code == 200, first.text
    replayed = await gateway.get(f"/v1/keys/{key['id']}", headers={"X-Acting-Admin": captured})
    assert "already used" in assert_error(replayed, 401, "unauthorized")["message"]

    for_a_get = claim(settings, tenant.admins[0], "GET", f"/v1/keys/{key['id']}")
    as_a_delete = await gateway.delete(f"/v1/keys/{key['id']}", headers={"X-Acting-Admin": for_a_get})
    assert_error(as_a_delete, 401, "unauthorized")
    for_another_key = claim(settings, tenant.admins[0], "DELETE", f"/v1/keys/{uuid4()}")
    elsewhere = await gateway.delete(f"/v1/keys/{key['id']}", headers={"X-Acting-Admin": for_another_key})
    assert_error(elsewhere, 401, "unauthorized")
    assert await pool.fetchval("SELECT count(*) FROM keys.api_keys WHERE id = $1", UUID(key["id"])) == 1


async def test_only_the_gateways_token_acts_for_an_administrator(http, settings, tenant: Tenant):
    tokens = parse_service_tokens(settings.service_tokens)
    for service in ("notifier", "reaper", "voice"):
        headers = {
            "Authorization": f"Bearer {tokens[service]}",
            "X-Acting-Admin": claim(settings, tenant.admins[0], "GET", "/v1/keys"),
        }
        assert_error(await http.get("/v1/keys", headers=headers), 403, "forbidden")


ROUTES_OF = {
    "gateway": [
        ("GET", "/v1/keys"),
        ("POST", "/v1/keys"),
        ("GET", "/v1/organizations"),
        ("POST", "/v1/administrators"),
        ("GET", "/v1/me"),
        ("GET", "/v1/directory/administrators"),
    ],
    "notifier": [
        ("GET", f"/v1/organizations/{uuid4()}/path"),
        ("GET", f"/v1/tenants/{uuid4()}/customer-administrators"),
    ],
    "reaper": [("POST", "/v1/keys/reap"), ("GET", "/v1/keys/expiry-status")],
}


@pytest.mark.parametrize("caller", ["voice", "notifier", "reaper", "gateway"])
async def test_a_token_outside_its_scope_is_403_on_every_other_route(http, settings, caller: str):
    """A verify-only token (any name but gateway, notifier and reaper) may only verify; each of the three may
    make its own calls and verify, nothing else."""
    token = parse_service_tokens(settings.service_tokens)[caller]
    for owner, routes in ROUTES_OF.items():
        if owner == caller:
            continue
        for method, path in routes:
            body = {"limit": 1} if path.endswith("/reap") else {}
            answer = await http.request(method, path, headers={"Authorization": f"Bearer {token}"}, json=body)
            assert_error(answer, 403, "forbidden")
    verify = await http.post("/v1/keys/verify", headers={"Authorization": f"Bearer {token}"}, json={"key": "kwk_x"})
    assert verify.json() == {"valid": False}
