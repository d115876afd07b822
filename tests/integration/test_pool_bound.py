"""Every service's pool (shared.db.create_pool, shared.app.service_app): a request that gets no connection within
DB_ACQUIRE_TIMEOUT is a 503 with Retry-After in the error shape, whatever the route and whether it acquires
the connection itself or through the pool's own fetch; the notifier's, the reaper's and the gateway's routes
take their connections this way."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from fastapi import Request

from shared.app import service_app
from shared.db import create_pool
from shared.observability import Readiness
from shared.settings import ServiceSettings
from tests.fixtures.errors import assert_error


@dataclass
class Context:
    pool: asyncpg.Pool

    def readiness(self) -> Readiness:
        return Readiness({}, {})


async def test_a_route_of_any_service_whose_pool_stays_taken_answers_503_with_retry_after_within_the_bound(
    database_url: str,
):
    @contextlib.asynccontextmanager
    async def running(_: ServiceSettings) -> AsyncIterator[Context]:
        pool = await create_pool(database_url, min_size=1, max_size=2, acquire_timeout=0.5)
        try:
            yield Context(pool)
        finally:
            await pool.close()

    app = service_app(
        "probe",
        "probe",
        lambda: ServiceSettings(keyward_env="dev", kafka_security_protocol="PLAINTEXT"),
        running,
        shutdown_seconds=5,
    )

    @app.get("/through-the-pool")
    async def through_the_pool(request: Request) -> dict[str, int]:
        return {"one": await request.app.state.context.pool.fetchval("SELECT 1")}

    @app.get("/acquiring")
    async def acquiring(request: Request) -> dict[str, int]:
        async with request.app.state.context.pool.acquire() as conn:
            return {"one": await conn.fetchval("SELECT 1")}

    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://probe") as client,  # type: ignore[arg-type]
    ):
        assert (await client.get("/through-the-pool")).json() == {"one": 1}
        pool = app.state.context.pool
        held = [await pool.acquire() for _ in range(2)]
        try:
            for path in ("/through-the-pool", "/acquiring"):
                started = time.monotonic()
                response = await asyncio.wait_for(client.get(path), timeout=5)
                waited = time.monotonic() - started
                assert_error(response, 503, "unavailable")
                assert response.headers["Retry-After"] == "5"
                assert 0.5 <= waited < 2.0, (path, waited)
        finally:
            for conn in held:
                await pool.release(conn)
        assert (await client.get("/acquiring")).json() == {"one": 1}
