"""The relay as a process of its own (`python -m services.keys relay`), beside a keys service that does not
relay (RUN_RELAY=false): the production layout, where the replicas serving verify publish nothing."""

import asyncio
import os

import asyncpg
import httpx

from services.keys.outbox import repository as outbox
from shared.db import create_pool
from shared.events import CloudEvent, KeyCreated
from shared.migrate import scratch_database
from tests.fixtures.events import detached_key_fields
from tests.fixtures.processes import ServiceProcess, service_env
from tests.fixtures.waiting import stays_true


async def unsent(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM keys.outbox WHERE sent_at IS NULL"))


async def test_only_the_relay_process_publishes_and_it_needs_no_key_material(settings):
    async with scratch_database(os.environ["DATABASE_URL"], "kw_test_relay") as url:
        env = service_env(settings) | {"DATABASE_URL": url}
        api = await ServiceProcess("keys", env | {"RUN_RELAY": "false"}).start()
        pool = await create_pool(url, max_size=2)
        relay = None
        try:
            event = KeyCreated(**detached_key_fields(name="relayed apart"))
            async with pool.acquire() as conn:
                await outbox.add_events(conn, settings.kafka_topic, [CloudEvent.of(event)])

            async def still_unsent() -> bool:
                return await unsent(pool) == 1

            # The API process's watcher and gauges run meanwhile (each second); it must not publish.
            await stays_true(still_unsent, for_seconds=2.5)

            secrets = ("SERVICE_TOKENS", "ACTING_ADMIN_SECRET", "KEY_HMAC_SECRETS", "KEY_ENCRYPTION_KEYS")
            relay_env = {k: v for k, v in env.items() if k not in secrets}
            relay = ServiceProcess("keys", relay_env, command="relay", port_variable="RELAY_PORT", without=secrets)
            await relay.start()
            for _ in range(100):
                if await unsent(pool) == 0:
                    break
                await asyncio.sleep(0.1)
            assert await unsent(pool) == 0, relay.log_tail()
            async with httpx.AsyncClient(base_url=relay.url) as client:
                ready = await client.get("/readyz")
                assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
                metrics = (await client.get("/metrics")).text
            assert "keyward_relay_leader 1.0" in metrics
            assert "keyward_relay_published_total 1.0" in metrics
            assert await relay.stop() == 0
            relay = None
        finally:
            if relay is not None:
                await relay.stop()
            await pool.close()
            await api.stop()
