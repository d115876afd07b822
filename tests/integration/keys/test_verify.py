"""The voice client's sign-in path."""

import asyncio

import pytest

from services.keys import keyformat
from tests.fixtures.directory import Tenant
from tests.integration.keys.test_keys_api import create


@pytest.fixture
def verify(http, voice_token):
    async def call(key: str, token: str | None = voice_token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await http.post("/v1/keys/verify", json={"key": key}, headers=headers)

    return call


async def test_a_live_key_is_valid_and_says_whose_it_is(verify, as_admin, tenant: Tenant):
    created = await create(as_admin(tenant.admins[0]), tenant.orgs["org-1"])
    response = await verify(created["key"])
    assert response.status_code == 200
    assert response.json() == {
        "valid": True,
        "key_id": created["id"],
        "organization_id": created["organization_id"],
        "tenant_id": str(tenant.id),
        "expires_at": response.json()["expires_at"],
    }


async def test_unknown_malformed_expired_and_deleted_keys_get_the_same_answer(verify, as_admin, tenant: Tenant, pool):
    admin = as_admin(tenant.admins[0])
    expired = await create(admin, tenant.id)
    await pool.execute(
        "UPDATE keys.api_keys SET created_at = now() - interval '2 days', expires_at = now() - interval '1 millisecond' WHERE id = $1",
        expired["id"],
    )
    deleted = await create(admin, tenant.id)
    await admin.delete(f"/v1/keys/{deleted['id']}")
    live = await create(admin, tenant.id)
    typo = live["key"][:-1] + ("A" if live["key"][-1] != "A" else "B")
    candidates = [keyformat.generate(), "kwk_short", "", "x" * 500, typo, expired["key"], deleted["key"]]
    answers = [await verify(c) for c in candidates]
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"valid": False})] * len(candidates)
    assert (await verify(live["key"])).json()["valid"] is True


async def test_a_key_is_invalid_the_instant_it_expires_even_before_the_reaper_runs(
    verify, as_admin, tenant: Tenant, pool
):
    created = await create(as_admin(tenant.admins[0]), tenant.id)
    await pool.execute(
        "UPDATE keys.api_keys SET created_at = now() - interval '1 day', expires_at = clock_timestamp() + interval '300 milliseconds' WHERE id = $1",
        created["id"],
    )
    assert (await verify(created["key"])).json()["valid"] is True
    await asyncio.sleep(0.4)
    assert (await verify(created["key"])).json() == {"valid": False}
    assert await pool.fetchval("SELECT count(*) FROM keys.api_keys WHERE id = $1", created["id"]) == 1


async def test_verify_requires_a_platform_service_token(verify, as_admin, tenant: Tenant):
    created = await create(as_admin(tenant.admins[0]), tenant.id)
    assert (await verify(created["key"], token=None)).status_code == 401
    assert (await verify(created["key"], token="not-a-real-service-token")).status_code == 401


async def test_use_is_recorded_in_batches_not_per_call(verify, as_admin, tenant: Tenant, pool, keys_app):
    created = await create(as_admin(tenant.admins[0]), tenant.id)
    for _ in range(20):
        assert (await verify(created["key"])).json()["valid"] is True
    for _ in range(40):
        used = await pool.fetchval("SELECT last_used_at FROM keys.api_keys WHERE id = $1", created["id"])
        if used is not None:
            break
        await asyncio.sleep(0.1)
    assert used is not None, "last_used_at was never written"
    listed = (await as_admin(tenant.admins[0]).get(f"/v1/keys/{created['id']}")).json()
    assert listed["last_used_at"] is not None
