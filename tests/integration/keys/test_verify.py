"""The voice client's sign-in path."""

import asyncio
import json
import random

import pytest
from prometheus_client import REGISTRY

from services.keys import keyformat
from tests.fixtures.directory import Tenant
from tests.fixtures.errors import assert_error
from tests.fixtures.keys import create_key


@pytest.fixture
def verify(http, voice_token):
    async def call(key: str, token: str | None = voice_token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await http.post("/v1/keys/verify", json={"key": key}, headers=headers)

    return call


async def test_a_live_key_is_valid_and_says_whose_it_is(verify, as_admin, tenant: Tenant):
    created = await create_key(as_admin(tenant.admins[0]), tenant.orgs["org-1"])
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
    expired = await create_key(admin, tenant.id)
    await pool.execute(
        "UPDATE keys.api_keys SET created_at = now() - interval '2 days', expires_at = now() - interval '1 millisecond' WHERE id = $1",
        expired["id"],
    )
    deleted = await create_key(admin, tenant.id)
    await admin.delete(f"/v1/keys/{deleted['id']}")
    live = await create_key(admin, tenant.id)
    typo = live["key"][:-1] + ("A" if live["key"][-1] != "A" else "B")
    candidates = [keyformat.generate(), "kwk_short", "", "x" * 500, typo, expired["key"], deleted["key"]]
    answers = [await verify(c) for c in candidates]
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"valid": False})] * len(candidates)
    assert (await verify(live["key"])).json()["valid"] is True


async def test_a_key_is_invalid_the_instant_it_expires_even_before_the_reaper_runs(
    verify, as_admin, tenant: Tenant, pool
):
    created = await create_key(as_admin(tenant.admins[0]), tenant.id)
    await pool.execute(
        "UPDATE keys.api_keys SET created_at = now() - interval '1 day', expires_at = clock_timestamp() + interval '300 milliseconds' WHERE id = $1",
        created["id"],
    )
    assert (await verify(created["key"])).json()["valid"] is True
    await asyncio.sleep(0.4)
    assert (await verify(created["key"])).json() == {"valid": False}
    assert await pool.fetchval("SELECT count(*) FROM keys.api_keys WHERE id = $1", created["id"]) == 1


async def test_verify_requires_a_platform_service_token(verify, as_admin, tenant: Tenant):
    created = await create_key(as_admin(tenant.admins[0]), tenant.id)
    for token in (None, "not-a-real-service-token"):
        refused = await verify(created["key"], token=token)
        assert_error(refused, 401, "unauthorized")
        assert created["id"] not in refused.text


async def test_use_is_recorded_in_batches_not_per_call(verify, as_admin, tenant: Tenant, pool, keys_app):
    created = await create_key(as_admin(tenant.admins[0]), tenant.id)
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


async def test_verifies_at_once_share_statements_and_each_gets_its_own_answer(verify, as_admin, tenant: Tenant, pool):
    """Coalesced lookups (VERIFY_BATCH_MAX): 240 verifies at once, of live, expired, deleted and unknown keys,
    answered by far fewer statements than requests, each request with its own key's answer."""
    admin = as_admin(tenant.admins[0])
    live = [await create_key(admin, tenant.orgs["org-1"]) for _ in range(5)]
    expired, deleted = await create_key(admin, tenant.id), await create_key(admin, tenant.id)
    await pool.execute(
        "UPDATE keys.api_keys SET created_at = now() - interval '2 days', expires_at = now() - interval '1 second' "
        "WHERE id = $1",
        expired["id"],
    )
    await admin.delete(f"/v1/keys/{deleted['id']}")
    expected = {k["key"]: k["id"] for k in live} | {expired["key"]: None, deleted["key"]: None}
    expected |= {keyformat.generate(): None for _ in range(3)}
    asked = list(expected) * 24
    random.shuffle(asked)
    before = REGISTRY.get_sample_value("keyward_verify_lookup_batch_size_count") or 0.0
    answers = await asyncio.gather(*(verify(key) for key in asked))
    statements = (REGISTRY.get_sample_value("keyward_verify_lookup_batch_size_count") or 0.0) - before
    for key, answer in zip(asked, answers, strict=True):
        assert answer.status_code == 200
        assert answer.json().get("key_id") == expected[key], key[:8]
    assert 1 <= statements <= len(asked) / 4, f"{statements:.0f} statements for {len(asked)} verifies"


def _post(http, voice_token, content: bytes, content_type: str | None = "application/json"):
    headers = {"Authorization": f"Bearer {voice_token}"}
    if content_type:
        headers["Content-Type"] = content_type
    return http.post("/v1/keys/verify", content=content, headers=headers)


async def test_the_fast_path_and_the_fastapi_route_give_the_same_answer(http, voice_token, as_admin, tenant: Tenant):
    """A body past the fast path's 4 KiB is answered by the FastAPI route: byte for byte the same."""
    created = await create_key(as_admin(tenant.admins[0]), tenant.id)
    fast = await _post(http, voice_token, json.dumps({"key": created["key"]}).encode())
    routed = await _post(http, voice_token, json.dumps({"key": created["key"], "pad": "x" * 5000}).encode())
    assert fast.status_code == routed.status_code == 200
    assert fast.content == routed.content
    assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
    assert fast.json()["valid"] is True


@pytest.mark.parametrize(
    ("content", "content_type", "status", "fields"),
    [
        (b'{"key": "kwk_', "application/json", 400, None),
        (b"[]", "application/json", 422, None),
        (b'{"other": 1}', "application/json", 422, {"key"}),
        (b'{"key": 42}', "application/json", 422, {"key"}),
        (json.dumps({"key": "k" * 513}).encode(), "application/json", 422, {"key"}),
        (b"key=kwk_abc", "application/x-www-form-urlencoded", 422, None),
        (b"", None, 422, None),
        (json.dumps({"key": "k" * 70_000}).encode(), "application/json", 413, None),
    ],
    ids=["bad-json", "not-an-object", "no-key", "key-not-a-string", "key-too-long", "form", "empty", "too-big"],
)
async def test_a_request_the_fast_path_does_not_take_gets_the_apis_documented_error(
    http, voice_token, content, content_type, status, fields
):
    response = await _post(http, voice_token, content, content_type)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] in ("bad_request", "validation_failed", "payload_too_large")
    if fields:
        assert set(error["fields"]) == fields


async def test_fast_path_answers_are_counted_under_the_route(http, voice_token, as_admin, tenant: Tenant):
    created = await create_key(as_admin(tenant.admins[0]), tenant.id)

    def answered() -> float:
        labels = {"service": "keys", "method": "POST", "route": "/v1/keys/verify", "status": "200"}
        return REGISTRY.get_sample_value("http_requests_total", labels) or 0.0

    before = answered()
    for _ in range(3):
        assert (await _post(http, voice_token, json.dumps({"key": created["key"]}).encode())).status_code == 200
    assert answered() == before + 3
