"""The gateway's JSON API: every call, its errors and its answers."""

import csv
import io
from uuid import uuid4

import asyncpg
import httpx

from tests.fixtures.directory import Tenant, create_admin
from tests.fixtures.errors import assert_error
from tests.fixtures.gateway import bearer
from tests.fixtures.keys import create_key
from tests.fixtures.processes import free_port
from tests.fixtures.random_refs import org_name, username


async def test_creating_a_key_answers_201_with_the_full_key_and_its_display(gateway: httpx.AsyncClient, tenant: Tenant):
    body = await create_key(gateway, tenant.orgs["org-1"], "Front desk", headers=bearer(tenant.admins[0]))
    assert body["key"].startswith("kwk_")
    assert body["key_display"] == f"{body['key'][:8]}…{body['key'][-4:]}"
    assert body["organization_id"] == str(tenant.orgs["org-1"])
    assert body["created_by"] == tenant.admins[0]


async def test_the_list_is_searched_sorted_and_paged_by_cursor(gateway: httpx.AsyncClient, tenant: Tenant):
    admin = tenant.admins[0]
    for name in ("Bravo desk", "alpha desk", "Charlie phone"):
        await create_key(gateway, tenant.orgs["org-2"], name, headers=bearer(admin))
    query = {"organization_id": str(tenant.orgs["org-2"]), "limit": "2"}
    first = (await gateway.get("/api/v1/keys", params=query, headers=bearer(admin))).json()
    assert [k["name"] for k in first["items"]] == ["alpha desk", "Bravo desk"]
    assert first["total"] == 3
    assert all("key" not in k and "…" in k["key_display"] for k in first["items"])
    second = await gateway.get("/api/v1/keys", params=query | {"cursor": first["next_cursor"]}, headers=bearer(admin))
    assert [k["name"] for k in second.json()["items"]] == ["Charlie phone"]
    assert second.json()["next_cursor"] is None
    found = await gateway.get(
        "/api/v1/keys", params=query | {"q": "DESK", "sort": "name", "order": "desc"}, headers=bearer(admin)
    )
    assert [k["name"] for k in found.json()["items"]] == ["Bravo desk", "alpha desk"]
    assert found.headers["cache-control"] == "no-store"


async def test_bad_input_gets_a_4xx_with_the_error_shape_never_a_500(gateway: httpx.AsyncClient, tenant: Tenant):
    headers = bearer(tenant.admins[0])
    org = str(tenant.id)
    taken = await create_key(gateway, org, headers=bearer(tenant.admins[0]))
    cases = [
        (400, "POST", "/api/v1/keys", {"content": b"{nope", "headers": {"Content-Type": "application/json"}}),
        (422, "POST", "/api/v1/keys", {"json": {"organization_id": org}}),
        (422, "POST", "/api/v1/keys", {"json": {"name": "", "organization_id": org}}),
        (422, "POST", "/api/v1/keys", {"json": {"name": "x", "organization_id": org, "extra": 1}}),
        (422, "POST", "/api/v1/keys", {"json": {"name": "x", "organization_id": "not-a-uuid"}}),
        (409, "POST", "/api/v1/keys", {"json": {"name": taken["name"], "organization_id": org}}),
        (413, "POST", "/api/v1/keys", {"json": {"name": "x" * 100_000, "organization_id": org}}),
        (422, "GET", "/api/v1/keys?sort=password", {}),
        (422, "GET", "/api/v1/keys?limit=100000", {}),
        (400, "GET", "/api/v1/keys?cursor=garbage", {}),
        (404, "GET", "/api/v1/keys/not-a-uuid", {}),
        (405, "PATCH", "/api/v1/keys/export.csv", {"json": {"name": "x"}}),
        (404, "GET", f"/api/v1/keys/{uuid4()}", {}),
        (404, "PATCH", f"/api/v1/keys/{uuid4()}", {"json": {"name": "x"}}),
        (422, "PATCH", f"/api/v1/keys/{taken['id']}", {"json": {"name": "a\nb"}}),
        (404, "DELETE", f"/api/v1/keys/{uuid4()}", {}),
        (422, "POST", "/api/v1/keys/bulk-delete", {"json": {"ids": []}}),
        (404, "GET", f"/api/v1/keys/export.csv?organization_id={uuid4()}", {}),
        (422, "POST", "/api/v1/organizations", {"json": {"name": "x"}}),
        (422, "POST", "/api/v1/administrators", {"json": {"username": "x"}}),
    ]
    for status, method, url, kwargs in cases:
        extra_headers = kwargs.pop("headers", {})
        response = await gateway.request(method, url, headers=headers | extra_headers, **kwargs)
        assert response.status_code == status, (method, url, response.text)
        assert set(response.json()["error"]) >= {"code", "message"}, response.text


async def test_one_key_comes_with_its_full_key_and_notices_unavailable_when_the_notifier_is_down(
    gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
):
    created = await create_key(gateway, tenant.id, headers=bearer(tenant.admins[0]))
    response = await gateway.get(f"/api/v1/keys/{created['id']}", headers=bearer(tenant.admins[0]))
    assert response.status_code == 200
    body = response.json()
    assert body["key"] == created["key"]
    assert body["notices_unavailable"] is True
    assert "notices" not in body
    assert response.headers["cache-control"] == "no-store"
    reveals = await pool.fetchval(
        "SELECT count(*) FROM keys.audit_log WHERE key_id = $1 AND action = 'reveal'", created["id"]
    )
    assert reveals == 1


async def test_one_key_carries_its_notice_history_from_the_notifier(make_gateway, stub, tenant: Tenant):
    async with make_gateway(notifier_url=stub.url) as gw:
        created = await create_key(gw, tenant.id, headers=bearer(tenant.admins[0]))
        notice = {
            "threshold_seconds": 2592000,
            "recipient": "a@example.com",
            "status": "sent",
            "sent_at": "2026-01-01T00:00:00Z",
            "internal": "not passed on",
        }
        stub.routes[f"/v1/keys/{created['id']}/notices"] = (200, [notice])
        body = (await gw.get(f"/api/v1/keys/{created['id']}", headers=bearer(tenant.admins[0]))).json()
        assert body["notices"] == [{k: v for k, v in notice.items() if k != "internal"}]
        assert "notices_unavailable" not in body
        _path, headers = next(r for r in stub.requests if r[0].endswith(f"{created['id']}/notices"))
        assert headers["Authorization"].startswith("Bearer ")


async def test_renaming_and_deleting_a_key(gateway: httpx.AsyncClient, tenant: Tenant):
    headers = bearer(tenant.admins[0])
    created = await create_key(gateway, tenant.id, headers=bearer(tenant.admins[0]))
    renamed = await gateway.patch(f"/api/v1/keys/{created['id']}", json={"name": "Renamed desk"}, headers=headers)
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Renamed desk"
    assert "key" not in renamed.json()
    deleted = await gateway.delete(f"/api/v1/keys/{created['id']}", headers=headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(await gateway.get(f"/api/v1/keys/{created['id']}", headers=headers), 404, "not_found")


async def test_bulk_delete_removes_all_or_nothing(gateway: httpx.AsyncClient, tenant: Tenant):
    headers = bearer(tenant.admins[0])
    keys = [await create_key(gateway, tenant.id, headers=headers) for _ in range(3)]
    ids = [k["id"] for k in keys]
    missing = await gateway.post("/api/v1/keys/bulk-delete", json={"ids": [*ids, str(uuid4())]}, headers=headers)
    assert_error(missing, 404, "not_found")
    for key in keys:
        assert (await gateway.get(f"/api/v1/keys/{key['id']}", headers=headers)).json()["key"] == key["key"]
    deleted = await gateway.post("/api/v1/keys/bulk-delete", json={"ids": ids}, headers=headers)
    assert deleted.status_code == 200
    assert sorted(deleted.json()["deleted"]) == sorted(ids)


async def test_the_export_streams_every_key_of_the_filter_with_the_full_key(gateway: httpx.AsyncClient, tenant: Tenant):
    admin = tenant.admins[0]
    inside = [await create_key(gateway, tenant.orgs["org-1"], f"export {i}", headers=bearer(admin)) for i in range(3)]
    await create_key(gateway, tenant.id, "export elsewhere", headers=bearer(admin))
    params = {"organization_id": str(tenant.orgs["org-1"]), "q": "export"}
    async with gateway.stream("GET", "/api/v1/keys/export.csv", params=params, headers=bearer(admin)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        text = (await response.aread()).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["name"]: r["key"] for r in rows} == {k["name"]: k["key"] for k in inside}


async def test_organizations_come_as_the_tree_the_caller_can_see(gateway: httpx.AsyncClient, tenant: Tenant, world):
    tree = (await gateway.get("/api/v1/organizations", headers=bearer(tenant.admins[0]))).json()
    assert [n["id"] for n in tree] == [str(tenant.id)]
    assert [c["id"] for c in tree[0]["children"]] == [str(tenant.orgs["org-1"])]
    assert [c["id"] for c in tree[0]["children"][0]["children"]] == [str(tenant.orgs["org-2"])]
    system = (await gateway.get("/api/v1/organizations", headers=bearer(world.system_admin))).json()
    # Other tests (a directory import) may add roots of their own to the shared database.
    roots = {n["id"]: n for n in system}
    assert str(tenant.id) in {c["id"] for c in roots[str(world.root_id)]["children"]}


async def test_creating_organizations_and_administrators_within_reach(
    gateway: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, pool: asyncpg.Pool
):
    headers = bearer(tenant.admins[0])
    org = await gateway.post(
        "/api/v1/organizations", json={"name": org_name(), "parent_id": str(tenant.id)}, headers=headers
    )
    assert org.status_code == 201, org.text
    assert org.json()["parent_id"] == str(tenant.id)
    outside_name = org_name()
    outside = await gateway.post(
        "/api/v1/organizations", json={"name": outside_name, "parent_id": str(other_tenant.id)}, headers=headers
    )
    assert_error(outside, 404, "not_found")
    assert await pool.fetchval("SELECT count(*) FROM keys.organizations WHERE name = $1", outside_name) == 0
    user = username("new")
    admin = {
        "username": user,
        "email": f"{user}@example.com",
        "display_name": "New Admin",
        "level": "tenant",
        "organization_id": org.json()["id"],
    }
    created = await gateway.post("/api/v1/administrators", json=admin, headers=headers)
    assert created.status_code == 201, created.text
    again = await gateway.post("/api/v1/administrators", json=admin, headers=headers)
    assert_error(again, 409, "conflict", {"username": "already taken"})
    assert (await gateway.get("/api/v1/me", headers=bearer(user))).json()["organization_id"] == org.json()["id"]


async def test_only_customer_administrators_manage_keys(gateway: httpx.AsyncClient, tenant: Tenant, pool):
    async with pool.acquire() as conn:
        viewer = await create_admin(conn, tenant.id, role="administrator")
    assert_error(await gateway.get("/api/v1/keys", headers=bearer(viewer)), 403, "forbidden")
    created = await gateway.post(
        "/api/v1/keys", json={"name": "x", "organization_id": str(tenant.id)}, headers=bearer(viewer)
    )
    assert_error(created, 403, "forbidden")
    assert await pool.fetchval("SELECT count(*) FROM keys.api_keys WHERE tenant_id = $1", tenant.id) == 0


async def test_a_keys_service_that_does_not_answer_is_a_503(make_gateway, tenant: Tenant):
    async with make_gateway(keys_url=f"http://127.0.0.1:{free_port()}") as gw:
        response = await gw.get("/api/v1/keys", headers=bearer(tenant.admins[0]))
        assert_error(response, 503, "unavailable")
        # A client (or a load balancer) knows to come back: a keys replica down is the chaos run's first fault.
        assert response.headers["retry-after"].isdigit(), response.headers
        ready = await gw.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready" and ready.json()["checks"]["keys"] != "ok", ready.text
        health = await gw.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})


async def test_metrics_answer_a_direct_scrape_but_not_a_request_relayed_by_the_ingress(gateway: httpx.AsyncClient):
    direct = await gateway.get("/metrics")
    assert direct.status_code == 200 and "http_requests_total" in direct.text
    for header in ({"X-Forwarded-For": "203.0.113.10"}, {"X-Real-IP": "203.0.113.10"}, {"Forwarded": "for=1.2.3.4"}):
        relayed = await gateway.get("/metrics", headers=header)
        assert relayed.status_code == 404, header
        assert "http_requests_total" not in relayed.text
    health = await gateway.get("/healthz", headers={"X-Forwarded-For": "203.0.113.10"})
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
