"""Slow downloads through the gateway: readers that stop reading cannot take the connections to the keys service
that pages and API calls need, and they are let go after EXPORT_STALL_TIMEOUT.

The gateway runs under uvicorn on a real socket (a reader's backpressure only exists there). Its listening socket
has a small send buffer, which accepted sockets inherit, and each stalled reader a small receive buffer: a few
hundred kilobytes of CSV then fill the sockets between them, as 50 MB do between a browser and a gateway.
"""

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from services.gateway.app import create_app
from services.keys.config import Settings as KeysSettings
from tests.fixtures.directory import Tenant, create_admin
from tests.fixtures.errors import assert_error
from tests.fixtures.gateway import bearer, make_token
from tests.fixtures.keys import Caller
from tests.fixtures.processes import ServiceProcess
from tests.fixtures.waiting import eventually
from tests.integration.gateway.conftest import gateway_settings, sign_in

SMALL_BUFFER = 4096
STALLED = 3  # = EXPORT_CONNECTIONS below
KEYS = 1500  # about 250 KB of CSV: far more than the small buffers and uvicorn's write buffer hold
PROMPT_SECONDS = 1.5


@contextlib.asynccontextmanager
async def served_gateway(keys: KeysSettings, keys_url: str, **overrides: Any) -> AsyncIterator[str]:
    app = create_app(gateway_settings(keys, keys_url, **overrides), live_events=False)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        await eventually(lambda: server.started or task.done(), timeout=30)
        assert not task.done(), "the gateway did not start"
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        listener.close()


@contextlib.contextmanager
def stalled_downloads(base_url: str, admins: list[str], path: str) -> Iterator[list[socket.socket]]:
    """Starts one export per administrator and never reads a byte of the answers."""
    host, port = base_url.removeprefix("http://").split(":")
    readers = []
    try:
        for admin in admins:
            reader = socket.socket()
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
            reader.connect((host, int(port)))
            request = f"GET {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {make_token(admin)}\r\n\r\n"
            reader.sendall(request.encode())
            readers.append(reader)
        yield readers
    finally:
        for reader in readers:
            reader.close()


async def make_keys(caller: Caller, organization: object, count: int) -> None:
    async def one(n: int) -> None:
        name = f"slow download {n:05d} " + "x" * 60
        response = await caller.post("/v1/keys", json={"name": name, "organization_id": str(organization)})
        assert response.status_code == 201, response.text

    for start in range(0, count, 50):
        await asyncio.gather(*(one(n) for n in range(start, min(start + 50, count))))


@pytest.fixture
async def exporters(pool: asyncpg.Pool, tenant: Tenant) -> list[str]:
    """Administrators of the tenant, one per stalled download (the keys service bounds exports per administrator)."""
    async with pool.acquire() as conn:
        return [tenant.admins[0]] + [await create_admin(conn, tenant.id) for _ in range(STALLED)]


async def timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def test_stalled_downloads_leave_the_list_page_and_api_prompt_and_are_let_go(
    settings: KeysSettings, keys_server: ServiceProcess, as_admin, tenant: Tenant, exporters: list[str]
):
    await make_keys(as_admin(tenant.admins[0]), tenant.id, KEYS)
    export = f"/api/v1/keys/export.csv?organization_id={tenant.id}"
    async with (
        served_gateway(
            settings,
            keys_server.url,
            upstream_connections=2,
            export_connections=STALLED,
            upstream_acquire_timeout="1s",
            export_stall_timeout="4s",
        ) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
    ):
        admin = tenant.admins[0]
        await sign_in(client, admin)
        with stalled_downloads(base_url, exporters[1:], export):
            # Every export connection is held by a reader that reads nothing: one more export waits its bound, then
            # is told to come back.
            async def exports_are_taken() -> bool:
                response = await client.get(export, headers=bearer(exporters[0]))
                return response.status_code == 503

            await eventually(exports_are_taken, timeout=10, every=0.2)
            busy = await client.get(export, headers=bearer(exporters[0]))
            assert_error(busy, 503, "unavailable")
            assert busy.headers["retry-after"].isdigit()

            # Pages and API calls have connections of their own: more calls at once than there are connections.
            calls = [timed(client.get("/api/v1/keys", params={"limit": "5"}, headers=bearer(admin))) for _ in range(6)]
            calls.append(timed(client.get("/keys")))
            for response, seconds in await asyncio.gather(*calls):
                assert response.status_code == 200, response.text[:300]
                assert seconds < PROMPT_SECONDS, f"{response.request.url} took {seconds:.2f}s"

            # EXPORT_STALL_TIMEOUT later the readers are let go and their connections freed: an export goes through.
            async def an_export_goes_through() -> bool:
                response = await client.get(export, headers=bearer(exporters[0]))
                return response.status_code == 200 and response.text.count("\n") == KEYS + 1

            await eventually(an_export_goes_through, timeout=15, every=0.5)
