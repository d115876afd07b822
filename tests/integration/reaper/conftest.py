"""Fixtures for the reaper's tests: reaper processes beside the keys service, and keys made in bulk by SQL."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import UUID, uuid4

import asyncpg
import pytest

from services.keys.config import Settings
from tests.fixtures.directory import Tenant
from tests.fixtures.processes import ServiceProcess, service_env
from tests.fixtures.reaper import INTERVAL, StartReaper

# One consumer group for the whole run, as one deployment has: a restarted reaper resumes where it left.
_GROUP = f"reaper-test-{uuid4().hex[:8]}"


def reaper_env(settings: Settings, keys: str, **overrides: str) -> dict[str, str]:
    env = service_env(settings) | {
        "KEYS_URL": keys,
        "REAPER_INTERVAL": f"{INTERVAL:g}s",
        "REAPER_CONSUMER_GROUP": _GROUP,
    }
    return env | {name.upper(): value for name, value in overrides.items()}


@pytest.fixture(scope="module")
async def start_reaper(settings: Settings, keys_server: ServiceProcess) -> AsyncIterator[StartReaper]:
    """Starts reaper processes (settings as keyword overrides); every one still running is killed after."""
    started: list[ServiceProcess] = []

    async def start(**overrides: str) -> ServiceProcess:
        process = ServiceProcess("reaper", reaper_env(settings, keys_server.url, **overrides))
        started.append(process)
        return await process.start()

    yield start
    await asyncio.gather(*(p.stop(timeout=10) for p in started))


async def insert_keys(
    pool: asyncpg.Pool, org_id: UUID, count: int, *, expires_in: float = -60.0, step: float = 0.0
) -> list[UUID]:
    """Inserts keys straight into keys.api_keys, with dummy digests and ciphertexts and no `created` event.

    Key n (from 0) expires `expires_in + n * step` seconds from now; created a day before its expiry. Its
    expiry notices count as sent, as they would be for a real key, so the keys service's expiry watcher
    leaves the rows alone (its row locks would make the reaper skip them for a moment).
    """
    rows = await pool.fetch(
        """
        INSERT INTO keys.api_keys (id, name, organization_id, organization_path, organization_name, tenant_id,
            created_by, created_at, expires_at, key_display, digest, digest_key_id, ciphertext, enc_key_id,
            noticed_threshold_seconds)
        SELECT gen_random_uuid(), 'bulk ' || $3 || ' ' || n, o.id, o.path, o.name, o.tenant_id, 'bulk-loader',
               e.at - interval '1 day', e.at, 'kwk_bulk...' || n, uuid_send(gen_random_uuid()), 'dev-1',
               uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'dev-1', 1
        FROM keys.organizations o, generate_series(0, $2 - 1) AS n,
             LATERAL (SELECT now() + make_interval(secs => $4 + n * $5) AS at) e
        WHERE o.id = $1
        RETURNING id
        """,
        org_id,
        count,
        uuid4().hex[:8],
        expires_in,
        step,
    )
    return [r["id"] for r in rows]


@pytest.fixture
def bulk_keys(pool: asyncpg.Pool, tenant: Tenant) -> Callable[..., Awaitable[list[UUID]]]:
    return lambda count, **kw: insert_keys(pool, tenant.orgs["org-1"], count, **kw)
