"""The lifecycle events tell the reaper when to wake: a key that expires long before the next planned pass
is still deleted as it expires."""

import time
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from deploy.local import kafka_access
from services.keys.config import Settings
from tests.fixtures.directory import Tenant
from tests.fixtures.keys import Caller, create_key
from tests.fixtures.processes import ServiceProcess, metric, service_env
from tests.fixtures.reaper import StartReaper, deletions, lateness, wait_until_gone
from tests.fixtures.waiting import eventually

LIFETIME = 4.0


@pytest.fixture(scope="module")
async def short_lived_keys(settings: Settings) -> AsyncIterator[ServiceProcess]:
    """A keys service whose keys live 4 seconds, on a topic of its own so its reaper has no backlog to read."""
    topic = f"apikeys.lifecycle.reaper-{uuid4().hex[:8]}"
    await kafka_access.create_topics({topic: 3})
    env = service_env(settings) | {"KAFKA_TOPIC": topic, "KEY_LIFETIME": f"{int(LIFETIME)}s"}
    process = await ServiceProcess("keys", env).start()
    yield process
    await process.stop()


async def test_a_created_event_wakes_the_reaper_before_its_interval_is_up(
    start_reaper: StartReaper, short_lived_keys: ServiceProcess, settings: Settings, tenant: Tenant, pool: asyncpg.Pool
):
    topic = short_lived_keys.env["KAFKA_TOPIC"]
    reaper = await start_reaper(keys_url=short_lived_keys.url, kafka_topic=topic, reaper_interval="60s")

    async def idle() -> bool:
        return await metric(reaper, "keyward_reaper_next_wake_timestamp_seconds") > time.time() + LIFETIME + 2

    async def consuming() -> bool:
        async with httpx.AsyncClient() as client:
            return "keyward_consumer_lag{" in (await client.get(f"{reaper.url}/metrics")).text

    # Nothing expires before our key would: the reaper plans to sleep past its expiry, and only the event
    # announcing it can change that.
    await eventually(idle, timeout=20)
    await eventually(consuming, timeout=20)  # joined its consumer group and got its partitions
    async with httpx.AsyncClient(base_url=short_lived_keys.url) as client:
        key = await create_key(Caller.gateway(client, settings, tenant.admins[0]), tenant.id)
    key_id = UUID(key["id"])

    async def woken_for_it() -> bool:
        return await metric(reaper, "keyward_reaper_next_wake_timestamp_seconds") < time.time() + LIFETIME + 1

    await eventually(woken_for_it, timeout=LIFETIME - 1)
    await wait_until_gone(pool, [key_id], timeout=LIFETIME + 5)
    [late] = lateness(await deletions(pool, [key_id]))
    print(f"a key learnt from its created event was deleted {late:.3f}s after expiry (interval 60s)")
    assert 0 <= late <= 1.0
