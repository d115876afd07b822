import json
from uuid import UUID, uuid4

import httpx
import pytest

from services.notifier.keys_client import KeysClient, KeysUnavailable

TENANT = uuid4()
ROOT, ORG, CHILD = uuid4(), uuid4(), uuid4()


def org(id_: UUID, name: str, parent: UUID | None, depth: int) -> dict:
    return {"id": str(id_), "name": name, "parent_id": str(parent) if parent else None, "depth": depth}


def admin(username: str, *, level: str = "tenant", role: str = "customer_administrator", tenant=TENANT) -> dict:
    return {
        "username": username,
        "email": f"{username}@example.com",
        "display_name": username.title(),
        "level": level,
        "role": role,
        "tenant_id": str(tenant),
    }


def directory(handler, **kwargs) -> KeysClient:
    return KeysClient(
        "http://keys",
        "notifier-token-0123456789",
        timeout=1,
        recipients_ttl=kwargs.pop("ttl", 3),
        organizations_ttl=60,
        transport=httpx.MockTransport(handler),
        **kwargs,
    )


async def test_recipients_are_the_tenant_level_customer_administrators_the_keys_service_lists():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json=[admin("ann"), admin("sys", level="system"), admin("ops", role="administrator")]
        )

    found = await directory(handler).recipients(TENANT)
    assert [r.username for r in found] == ["ann"]
    assert seen[0].url.path == f"/v1/tenants/{TENANT}/customer-administrators"
    assert seen[0].headers["Authorization"] == "Bearer notifier-token-0123456789"
    assert "X-Acting-Admin" not in seen[0].headers


async def test_recipients_are_cached_only_for_the_configured_seconds():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json=[admin("ann")])

    cached = directory(handler, ttl=60)
    await cached.recipients(TENANT)
    await cached.recipients(TENANT)
    assert len(calls) == 1
    fresh = directory(handler, ttl=0)
    await fresh.recipients(TENANT)
    await fresh.recipients(TENANT)
    assert len(calls) == 3


async def test_a_failing_keys_service_makes_the_directory_unavailable():
    with pytest.raises(KeysUnavailable):
        await directory(lambda r: httpx.Response(503, json={})).recipients(TENANT)


async def test_the_organization_path_comes_from_the_path_call_without_the_system_root():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/v1/organizations/{CHILD}/path"
        return httpx.Response(
            200, json=[org(ROOT, "Keyward", None, 0), org(ORG, "Acme", ROOT, 1), org(CHILD, "Sales", ORG, 2)]
        )

    assert await directory(handler).organization_path(CHILD) == ("Acme", "Sales")


async def test_an_organization_the_path_call_does_not_know_has_no_names():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            404, content=json.dumps({"error": {"code": "not_found", "message": "organization not found"}})
        )

    assert await directory(handler).organization_path(CHILD) == ()
