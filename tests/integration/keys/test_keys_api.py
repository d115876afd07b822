import asyncio
import csv
import io

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

from services.keys import keyformat
from services.keys.app import create_app
from shared.auth import parse_service_tokens
from tests.fixtures.directory import Tenant
from tests.fixtures.errors import assert_error
from tests.fixtures.keys import Caller, create_key


async def test_creating_a_key_answers_201_with_the_full_key_and_a_year_of_life(as_admin, tenant: Tenant):
    admin = as_admin(tenant.admins[0])
    body = await create_key(admin, tenant.orgs["org-1"], "  Front desk  ")
    assert keyformat.is_well_formed(body["key"])
    assert body["name"] == "Front desk"
    assert body["created_by"] == tenant.admins[0]
    assert body["tenant_id"] == str(tenant.id)
    assert body["key_display"] == keyformat.display(body["key"])
    from datetime import datetime

    lifetime = datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(body["created_at"])
    assert lifetime.days == 365


async def test_the_plain_key_is_never_stored(as_admin, tenant: Tenant, pool: asyncpg.Pool):
    body = await create_key(as_admin(tenant.admins[0]), tenant.id)
    row = await pool.fetchrow("SELECT * FROM keys.api_keys WHERE id = $1", body["id"])
    for value in row.values():
        if isinstance(value, bytes | str):
            assert body["key"] not in (value.decode("latin-1") if isinstance(value, bytes) else value)


async def test_bad_names_get_422_with_field_messages(as_admin, tenant: Tenant):
    admin = as_admin(tenant.admins[0])
    for name in ["", "   ", "x" * 101, "tab\there", "new\nline"]:
        response = await admin.post("/v1/keys", json={"name": name, "organization_id": str(tenant.id)})
        assert response.status_code == 422, (name, response.text)
        assert "name" in response.json()["error"]["fields"]
    response = await admin.post("/v1/keys", json={"organization_id": "not-a-uuid"})
    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {"name", "organization_id"}


async def test_a_body_that_is_not_json_is_a_400(as_admin, tenant: Tenant):
    response = await as_admin(tenant.admins[0]).post(
        "/v1/keys", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert response.json()["error"]["code"] in ("bad_request", "validation_failed")


async def test_a_huge_body_gets_413(as_admin, tenant: Tenant):
    response = await as_admin(tenant.admins[0]).post(
        "/v1/keys", json={"name": "x" * 200_000, "organization_id": str(tenant.id)}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_names_are_unique_per_organization_regardless_of_case(as_admin, tenant: Tenant):
    admin = as_admin(tenant.admins[0])
    await create_key(admin, tenant.id, "Reception")
    response = await admin.post("/v1/keys", json={"name": "reception", "organization_id": str(tenant.id)})
    assert response.status_code == 409
    assert response.json()["error"]["fields"] == {"name": "already taken"}
    await create_key(admin, tenant.orgs["org-1"], "Reception")


async def test_getting_a_key_reveals_it_and_is_audited(as_admin, tenant: Tenant, pool: asyncpg.Pool):
    admin = as_admin(tenant.admins[0])
    created = await create_key(admin, tenant.id)
    response = await admin.get(f"/v1/keys/{created['id']}")
    assert response.status_code == 200
    assert response.json()["key"] == created["key"]
    assert response.headers["cache-control"] == "no-store"
    actions = await pool.fetch("SELECT action, actor FROM keys.audit_log WHERE key_id = $1 ORDER BY id", created["id"])
    assert [(r["action"], r["actor"]) for r in actions] == [("create", tenant.admins[0]), ("reveal", tenant.admins[0])]


async def test_renaming_a_key_keeps_it_and_refuses_a_taken_name(as_admin, tenant: Tenant):
    admin = as_admin(tenant.admins[0])
    first = await create_key(admin, tenant.id, "First")
    await create_key(admin, tenant.id, "Second")
    response = await admin.patch(f"/v1/keys/{first['id']}", json={"name": " Renamed "})
    assert response.status_code == 200 and response.json()["name"] == "Renamed"
    assert (await admin.get(f"/v1/keys/{first['id']}")).json()["key"] == first["key"]
    clash = await admin.patch(f"/v1/keys/{first['id']}", json={"name": "SECOND"})
    assert_error(clash, 409, "conflict", {"name": "already taken"})
    assert (await admin.get(f"/v1/keys/{first['id']}")).json()["name"] == "Renamed"


async def test_deleting_a_key_is_final(as_admin, tenant: Tenant, pool: asyncpg.Pool):
    admin = as_admin(tenant.admins[0])
    created = await create_key(admin, tenant.id)
    deleted = await admin.delete(f"/v1/keys/{created['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(await admin.get(f"/v1/keys/{created['id']}"), 404, "not_found")
    assert_error(await admin.delete(f"/v1/keys/{created['id']}"), 404, "not_found")
    assert await pool.fetchval("SELECT count(*) FROM keys.api_keys WHERE id = $1", created["id"]) == 0
    audit = await pool.fetchrow(
        "SELECT key_name, details FROM keys.audit_log WHERE key_id = $1 AND action = 'delete'", created["id"]
    )
    assert audit["key_name"] == created["name"] and audit["details"]["reason"] == "manual"


async def test_bulk_delete_removes_all_or_nothing(as_admin, tenant: Tenant, other_tenant: Tenant):
    admin = as_admin(tenant.admins[0])
    mine = [await create_key(admin, tenant.id) for _ in range(3)]
    theirs = await create_key(as_admin(other_tenant.admins[0]), other_tenant.id)
    response = await admin.post("/v1/keys/bulk-delete", json={"ids": [mine[0]["id"], theirs["id"]]})
    assert_error(response, 404, "not_found")
    assert (await admin.get(f"/v1/keys/{mine[0]['id']}")).json()["key"] == mine[0]["key"]
    assert (await as_admin(other_tenant.admins[0]).get(f"/v1/keys/{theirs['id']}")).json()["key"] == theirs["key"]
    response = await admin.post("/v1/keys/bulk-delete", json={"ids": [k["id"] for k in mine]})
    assert response.status_code == 200
    assert sorted(response.json()["deleted"]) == sorted(k["id"] for k in mine)
    for k in mine:
        assert_error(await admin.get(f"/v1/keys/{k['id']}"), 404, "not_found")
    empty = await admin.post("/v1/keys/bulk-delete", json={"ids": []})
    assert set(assert_error(empty, 422, "validation_failed")["fields"]) == {"ids"}


async def test_unknown_ids_and_paths_beside_a_key_are_404_or_405_never_422(as_admin, tenant: Tenant):
    """`/v1/keys/{key_id}` takes a UUID only: any other segment is another path, unknown (404) or another route's
    (405), not a key id that failed validation."""
    admin = as_admin(tenant.admins[0])
    assert_error(await admin.get("/v1/keys/00000000-0000-0000-0000-000000000000"), 404, "not_found")
    for method, path in [("GET", "/v1/keys/not-a-uuid"), ("PATCH", "/v1/keys/nope"), ("POST", "/v1/keys/x/roll")]:
        answer = await admin.request(method, path, json={"name": "n"})
        assert answer.status_code == 404, (method, path, answer.text)
    for method, path in [("GET", "/v1/keys/verify"), ("DELETE", "/v1/keys/reap"), ("PATCH", "/v1/keys/standing")]:
        answer = await admin.request(method, path, json={"name": "n"})
        assert answer.status_code == 405, (method, path, answer.text)


async def test_the_reap_limit_is_a_whole_number_not_a_boolean_or_a_string(http: httpx.AsyncClient, settings):
    token = parse_service_tokens(settings.service_tokens)["reaper"]
    for limit in (True, "5", 2.5):
        answer = await http.post("/v1/keys/reap", json={"limit": limit}, headers={"Authorization": f"Bearer {token}"})
        assert_error(answer, 422, "validation_failed")


async def test_the_export_has_every_listed_key_with_the_full_key_and_neutralised_formulas(
    as_admin, tenant: Tenant, pool
):
    admin = as_admin(tenant.admins[0])
    keys = [await create_key(admin, tenant.orgs["org-1"], f"=cmd|{i}") for i in range(3)]
    keys.append(await create_key(admin, tenant.orgs["org-2"], "plain"))
    outside = await create_key(admin, tenant.id, "outside the filter")
    response = await admin.get("/v1/keys/export.csv", params={"organization_id": str(tenant.orgs["org-1"])})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert {r["id"]: r["key"] for r in rows} == {k["id"]: k["key"] for k in keys}
    assert outside["id"] not in {r["id"] for r in rows}
    assert sorted(r["name"] for r in rows if r["name"].startswith("'")) == sorted("'" + k["name"] for k in keys[:3])
    [audit] = await pool.fetch(
        "SELECT details FROM keys.audit_log WHERE actor = $1 AND action = 'export'", tenant.admins[0]
    )
    assert audit["details"]["organization_id"] == str(tenant.orgs["org-1"])
    assert (audit["details"]["keys"], audit["details"]["finished"]) == (len(keys), True)


async def test_each_call_holds_one_pooled_connection_at_a_time(settings, tenant: Tenant):
    """With a pool of one, a second acquire inside a request would wait for itself: every call must finish.
    The export streams on the connection its authorization used."""
    app = create_app(settings.model_copy(update={"db_pool_size": 1}), workers=False)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://keys") as client:
            admin = Caller.gateway(client, settings, tenant.admins[0])
            org = str(tenant.orgs["org-1"])

            async def calls() -> tuple[dict, list[httpx.Response]]:
                created = await create_key(admin, org)
                answers = [
                    await admin.get("/v1/keys", params={"organization_id": org}),
                    await admin.get("/v1/keys/export.csv", params={"organization_id": org}),
                    await admin.get(f"/v1/keys/{created['id']}"),
                    await admin.get("/v1/organizations"),
                ]
                return created, answers

            created, answers = await asyncio.wait_for(calls(), timeout=20)
    assert [a.status_code for a in answers] == [200, 200, 200, 200], [a.text for a in answers]
    listed, export, one, organizations = answers
    assert [k["id"] for k in listed.json()["items"]] == [created["id"]]
    assert created["key"] in export.text
    assert one.json()["key"] == created["key"]
    assert str(tenant.orgs["org-1"]) in {o["id"] for o in organizations.json()}
