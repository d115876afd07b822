"""Live updates: the gateway as a process follows the topic and streams to each administrator only their events."""

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from services.keys.config import Settings as KeysSettings
from tests.fixtures.directory import Tenant
from tests.fixtures.gateway import bearer, gateway_env
from tests.fixtures.keys import create_key
from tests.fixtures.processes import ServiceProcess
from tests.fixtures.waiting import eventually, stays_true


@pytest.fixture(scope="session")
async def gateway_server(settings: KeysSettings, keys_server: ServiceProcess) -> AsyncIterator[ServiceProcess]:
    process = await ServiceProcess("gateway", gateway_env(settings, keys_server.url)).start()
    async with httpx.AsyncClient(base_url=process.url) as client:
        for _ in range(100):
            if (await client.get("/readyz")).json()["checks"].get("live_events") == "ok":
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"the live-event consumer never got ready: {process.log_tail()}")
    yield process
    await process.stop()


async def collect(response: httpx.Response, into: list[dict], ready: asyncio.Event) -> None:
    event = None
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == "ready":
            ready.set()
        elif line.startswith("data:") and event == "key":
            into.append(json.loads(line.split(":", 1)[1]))


async def test_each_administrator_is_streamed_only_the_events_they_may_see(
    gateway_server: ServiceProcess, tenant: Tenant, other_tenant: Tenant, world
):
    streams: dict[str, list[dict]] = {"tenant": [], "system": []}
    async with httpx.AsyncClient(base_url=gateway_server.url, timeout=30) as client:
        tasks = []
        for who, admin in (("tenant", tenant.admins[0]), ("system", world.system_admin)):
            ready = asyncio.Event()
            response = await client.send(
                client.build_request("GET", "/api/v1/events", headers=bearer(admin)), stream=True
            )
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            tasks.append((asyncio.create_task(collect(response, streams[who], ready)), response))
            await asyncio.wait_for(ready.wait(), 10)
        mine = await create_key(client, tenant.orgs["org-1"], headers=bearer(tenant.admins[0]))
        theirs = await create_key(client, other_tenant.id, headers=bearer(other_tenant.admins[0]))
        renamed = await client.patch(
            f"/api/v1/keys/{mine['id']}", json={"name": "renamed live"}, headers=bearer(tenant.admins[0])
        )
        assert renamed.status_code == 200
        await eventually(lambda: len(streams["system"]) >= 3 and len(streams["tenant"]) >= 2, timeout=10)
        # The other tenant's key must not follow (the system stream sees other tests' keys too).
        await stays_true(lambda: len(streams["tenant"]) == 2, for_seconds=0.5)
        for task, response in tasks:
            task.cancel()
            await response.aclose()
    assert [(m["type"], m["key_id"]) for m in streams["tenant"]] == [("created", mine["id"]), ("updated", mine["id"])]
    assert theirs["id"] in {m["key_id"] for m in streams["system"]}
    assert all("key" not in m for m in streams["system"])
    assert streams["tenant"][1]["name"] == "renamed live"
