"""Expiry holds without the reaper: verify refuses an expired key at once, and the figures show the backlog."""

from uuid import UUID

import asyncpg
import httpx

from shared.auth import parse_service_tokens
from tests.fixtures.directory import Tenant
from tests.fixtures.keys import create_key
from tests.fixtures.processes import ServiceProcess, metric
from tests.fixtures.reaper import StartReaper, remaining
from tests.fixtures.waiting import eventually


async def test_verify_answers_invalid_for_an_expired_key_while_no_reaper_runs(
    keys_server: ServiceProcess, as_admin, tenant: Tenant, pool: asyncpg.Pool, voice_token: str
):
    key = await create_key(as_admin(tenant.admins[0]), tenant.orgs["org-1"])
    async with httpx.AsyncClient(base_url=keys_server.url, headers={"Authorization": f"Bearer {voice_token}"}) as c:
        assert (await c.post("/v1/keys/verify", json={"key": key["key"]})).json()["valid"] is True
        await pool.execute(
            "UPDATE keys.api_keys SET created_at = now() - interval '1 day', expires_at = now() - interval '1 second'"
            " WHERE id = $1",
            UUID(key["id"]),
        )
        answer = await c.post("/v1/keys/verify", json={"key": key["key"]})
    assert answer.status_code == 200
    assert answer.json() == {"valid": False}
    assert await remaining(pool, [UUID(key["id"])]) == 1, "the key should still be there: no reaper runs"


async def test_a_reaper_whose_token_may_not_reap_deletes_nothing_and_reports_its_failing_passes(
    start_reaper: StartReaper, bulk_keys, pool: asyncpg.Pool, voice_token: str
):
    ids = await bulk_keys(1, expires_in=-5)
    # Its token is a real one, but a voice client's: it may only verify.
    reaper = await start_reaper(keys_token=voice_token)

    async def a_pass_failed() -> bool:
        return await metric(reaper, "keyward_reaper_pass_failures_total") >= 1

    await eventually(a_pass_failed, timeout=10)
    assert await metric(reaper, "keyward_reaper_last_success_timestamp_seconds") == 0
    assert await remaining(pool, ids) == 1


async def test_the_expiry_status_counts_the_expired_keys_still_present(
    keys_server: ServiceProcess, bulk_keys, settings
):
    reaper = parse_service_tokens(settings.service_tokens)["reaper"]
    async with httpx.AsyncClient(base_url=keys_server.url, headers={"Authorization": f"Bearer {reaper}"}) as c:
        before = (await c.get("/v1/keys/expiry-status")).json()
        await bulk_keys(5, expires_in=-30)
        await bulk_keys(3, expires_in=3600)
        after = (await c.get("/v1/keys/expiry-status")).json()
    assert after["expired"] == before["expired"] + 5
    assert after["oldest_expired_at"] is not None
