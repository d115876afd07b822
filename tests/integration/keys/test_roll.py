"""Rolling a key (issue 21): a successor that verifies at once, the predecessor until the overlap ends."""

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from shared.events import KeyCreated, KeyRotated, KeyUpdated
from tests.fixtures.directory import Tenant, create_admin
from tests.fixtures.errors import assert_error
from tests.fixtures.keys import create_key


async def verifies(http: httpx.AsyncClient, voice_token: str, key: str) -> bool:
    response = await http.post("/v1/keys/verify", json={"key": key}, headers={"Authorization": f"Bearer {voice_token}"})
    assert response.status_code == 200, response.text
    return bool(response.json()["valid"])


async def test_a_roll_answers_the_successor_with_its_full_key_and_both_keys_verify(
    as_admin, tenant: Tenant, http: httpx.AsyncClient, voice_token: str
):
    admin = as_admin(tenant.admins[0])
    old = await create_key(admin, tenant.orgs["org-1"], "Front desk")
    response = await admin.post(f"/v1/keys/{old['id']}/roll", json={"overlap": "1h"})
    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    new = response.json()
    assert new["id"] != old["id"] and new["key"] != old["key"]
    assert (new["name"], new["organization_id"], new["replaces"]) == ("Front desk", old["organization_id"], old["id"])
    assert new["replaced_by"] is None
    lifetime = datetime.fromisoformat(new["expires_at"]) - datetime.fromisoformat(new["created_at"])
    assert lifetime.days == 365
    assert await verifies(http, voice_token, new["key"])
    assert await verifies(http, voice_token, old["key"])

    before = (await admin.get(f"/v1/keys/{old['id']}")).json()
    assert before["replaced_by"] == new["id"]
    overlap_end = datetime.fromisoformat(before["expires_at"])
    assert abs(overlap_end - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(seconds=30)
    listed = {k["id"]: k for k in (await admin.get("/v1/keys", params={"q": "Front desk"})).json()["items"]}
    assert listed[old["id"]]["replaced_by"] == new["id"] and listed[new["id"]]["replaces"] == old["id"]


async def test_the_predecessor_verifies_until_the_overlap_ends_and_not_after(
    as_admin, tenant: Tenant, http: httpx.AsyncClient, voice_token: str
):
    admin = as_admin(tenant.admins[0])
    old = await create_key(admin, tenant.orgs["org-1"])
    new = (await admin.post(f"/v1/keys/{old['id']}/roll", json={"overlap": "2s"})).json()
    assert await verifies(http, voice_token, old["key"])
    await asyncio.sleep(2.5)
    assert not await verifies(http, voice_token, old["key"])
    assert await verifies(http, voice_token, new["key"])


async def test_an_overlap_never_lengthens_the_predecessors_life(as_admin, tenant: Tenant, pool: asyncpg.Pool):
    admin = as_admin(tenant.admins[0])
    old = await create_key(admin, tenant.orgs["org-1"])
    soon = datetime.now(UTC) + timedelta(hours=1)
    await pool.execute("UPDATE keys.api_keys SET expires_at = $2 WHERE id = $1", old["id"], soon)
    await admin.post(f"/v1/keys/{old['id']}/roll", json={"overlap": "7d"})
    assert await pool.fetchval("SELECT expires_at FROM keys.api_keys WHERE id = $1", old["id"]) == soon


async def test_without_an_overlap_the_roll_takes_rotation_overlap(as_admin, tenant: Tenant):
    admin = as_admin(tenant.admins[0])
    old = await create_key(admin, tenant.orgs["org-1"])
    assert (await admin.post(f"/v1/keys/{old['id']}/roll")).status_code == 201
    before = (await admin.get(f"/v1/keys/{old['id']}")).json()
    remaining = datetime.fromisoformat(before["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=7) - timedelta(minutes=1) < remaining <= timedelta(days=7)


async def test_a_roll_writes_the_successors_created_the_predecessors_updated_and_rotated_in_that_order(
    as_admin, tenant: Tenant, event_log
):
    admin = as_admin(tenant.admins[0])
    old = await create_key(admin, tenant.orgs["org-1"])
    new = (await admin.post(f"/v1/keys/{old['id']}/roll", json={"overlap": "12h"})).json()

    def rolled(events: list) -> bool:
        return any(isinstance(e.data, KeyRotated) and str(e.data.key_id) == old["id"] for e in events)

    events = await event_log.wait_for(rolled)
    ours = [e for e in events if e.subject in (old["id"], new["id"])]
    kinds = [(type(e.data), e.subject) for e in ours]
    assert kinds[-3:] == [(KeyCreated, new["id"]), (KeyUpdated, old["id"]), (KeyRotated, old["id"])]
    rotated = ours[-1].data
    assert isinstance(rotated, KeyRotated)
    assert str(rotated.successor_id) == new["id"]
    assert rotated.overlap_ends_at == rotated.expires_at
    assert rotated.successor_key_display == new["key_display"]
    assert rotated.rotated_by == tenant.admins[0]
    assert isinstance(ours[-2].data, KeyUpdated) and ours[-2].data.expires_at == rotated.overlap_ends_at


async def test_a_key_is_rolled_once(as_admin, tenant: Tenant):
    admin = as_admin(tenant.admins[0])
    old = await create_key(admin, tenant.orgs["org-1"])
    assert (await admin.post(f"/v1/keys/{old['id']}/roll")).status_code == 201
    assert_error(await admin.post(f"/v1/keys/{old['id']}/roll"), 409, "conflict")


async def test_two_concurrent_rolls_of_one_key_one_wins(as_admin, tenant: Tenant, pool: asyncpg.Pool):
    admin = as_admin(tenant.admins[0])
    old = await create_key(admin, tenant.orgs["org-1"])
    answers = await asyncio.gather(*(admin.post(f"/v1/keys/{old['id']}/roll") for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [201] + [409] * 7
    assert await pool.fetchval("SELECT count(*) FROM keys.api_keys WHERE replaces = $1", old["id"]) == 1


async def test_an_expired_or_deleted_key_cannot_be_rolled(as_admin, tenant: Tenant, pool: asyncpg.Pool):
    admin = as_admin(tenant.admins[0])
    expired, deleted = await create_key(admin, tenant.orgs["org-1"]), await create_key(admin, tenant.orgs["org-1"])
    await pool.execute(
        "UPDATE keys.api_keys SET created_at = now() - interval '1 h', expires_at = now() - interval '1 s' WHERE id = $1",
        expired["id"],
    )
    assert (await admin.delete(f"/v1/keys/{deleted['id']}")).status_code == 204
    for key in (expired, deleted):
        assert_error(await admin.post(f"/v1/keys/{key['id']}/roll"), 404, "not_found")


async def test_only_an_administrator_who_may_create_keys_there_may_roll(
    as_admin, tenant: Tenant, other_tenant: Tenant, pool: asyncpg.Pool
):
    key = await create_key(as_admin(tenant.admins[0]), tenant.orgs["org-2"])
    async with pool.acquire() as conn:
        not_a_manager = await create_admin(conn, tenant.id, role="administrator")
    assert_error(await as_admin(not_a_manager).post(f"/v1/keys/{key['id']}/roll"), 403, "forbidden")
    assert_error(await as_admin(other_tenant.admins[0]).post(f"/v1/keys/{key['id']}/roll"), 404, "not_found")
    for overlap in ("2y", "366d", "-1d", "99999999999999999999d", 4233581564623094):
        response = await as_admin(tenant.admins[0]).post(f"/v1/keys/{key['id']}/roll", json={"overlap": overlap})
        assert_error(response, 422, "validation_failed")
    assert await pool.fetchval("SELECT replaced_by FROM keys.api_keys WHERE id = $1", key["id"]) is None


async def test_the_successors_first_verify_is_recorded_on_the_predecessor(
    as_admin, tenant: Tenant, http: httpx.AsyncClient, voice_token: str
):
    admin = as_admin(tenant.admins[0])
    old = await create_key(admin, tenant.orgs["org-1"])
    new = (await admin.post(f"/v1/keys/{old['id']}/roll")).json()
    assert (await admin.get(f"/v1/keys/{old['id']}")).json()["successor_in_use_since"] is None
    assert await verifies(http, voice_token, new["key"])
    for _ in range(50):  # USAGE_FLUSH_INTERVAL=1s in this world
        since = (await admin.get(f"/v1/keys/{old['id']}")).json()["successor_in_use_since"]
        if since:
            break
        await asyncio.sleep(0.1)
    assert since is not None
    assert (await admin.get(f"/v1/keys/{new['id']}")).json()["first_used_at"] == since


async def test_the_export_links_a_rolled_key_and_its_successor(as_admin, tenant: Tenant):
    admin = as_admin(tenant.admins[0])
    old = await create_key(admin, tenant.orgs["org-2"])
    new = (await admin.post(f"/v1/keys/{old['id']}/roll")).json()
    response = await admin.get("/v1/keys/export.csv", params={"organization_id": str(tenant.orgs["org-2"])})
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(response.content.decode("utf-8-sig")))}
    assert (rows[old["id"]]["replaced_by"], rows[old["id"]]["replaces"]) == (new["id"], "")
    assert (rows[new["id"]]["replaces"], rows[new["id"]]["replaced_by"]) == (old["id"], "")
    assert rows[new["id"]]["key"] == new["key"]
