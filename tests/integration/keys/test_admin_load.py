"""Verify stays fast whatever the administrators do (issue 18): verify's own pool, a bounded wait for any
pooled connection (503 with Retry-After), and exports limited in number, length and patience."""

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.keys.app import create_app
from tests.fixtures.directory import Tenant, create_tenant
from tests.fixtures.errors import assert_error
from tests.fixtures.keys import Caller, create_key, insert_keys
from tests.fixtures.processes import ServiceProcess, service_env
from tests.fixtures.waiting import eventually

# More than the sockets between the service and a reader that stopped hold (the kernel's buffers on both
# sides, the sender's growing to tcp_wmem's 4 MiB, and the server's write buffer): about 7 MB of CSV.
EXPORT_KEYS = 40_000


@pytest.fixture
async def small_pools(settings) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    """The service in process with two connections for administrators, waiting at most a second for one."""
    cfg = settings.model_copy(update={"db_pool_size": 2, "db_acquire_timeout": timedelta(seconds=1)})
    app = create_app(cfg, workers=False)
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://keys") as client,  # type: ignore[arg-type]
    ):
        yield app, client


@pytest.fixture
async def every_admin_connection_held(small_pools) -> AsyncIterator[httpx.AsyncClient]:
    app, client = small_pools
    pool = app.state.context.pool  # type: ignore[attr-defined]
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        yield client
    finally:
        for conn in held:
            await pool.release(conn)


async def test_verify_answers_while_every_connection_of_the_administrators_pool_is_held(
    every_admin_connection_held, as_admin, tenant: Tenant, voice_token
):
    created = await create_key(as_admin(tenant.admins[0]), tenant.id)
    client = every_admin_connection_held
    voice = {"Authorization": f"Bearer {voice_token}"}
    started = time.monotonic()
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(client.post("/v1/keys/verify", json={"key": created["key"]}, headers=voice) for _ in range(20))
        ),
        timeout=5,
    )
    assert [a.status_code for a in answers] == [200] * 20
    assert all(a.json()["key_id"] == created["id"] for a in answers)
    assert time.monotonic() - started < 0.9  # not one of them waited for the administrators' pool's bound
    # The replica stays ready: it still serves verify.
    ready = await asyncio.wait_for(client.get("/readyz"), timeout=5)
    assert ready.status_code == 200, ready.text


async def test_a_call_that_gets_no_connection_within_the_bound_is_a_503_with_retry_after(
    every_admin_connection_held, settings, tenant: Tenant
):
    admin = Caller.gateway(every_admin_connection_held, settings, tenant.admins[0])
    started = time.monotonic()
    response = await asyncio.wait_for(admin.get("/v1/keys", params={"organization_id": str(tenant.id)}), timeout=10)
    waited = time.monotonic() - started
    assert_error(response, 503, "unavailable")
    assert response.headers["Retry-After"] == "5"
    assert 1.0 <= waited < 3.0, waited


# Exports, against the service as a process: a raw socket that stops reading fills the real sockets' buffers.


class StalledReader:
    """An export's request over a socket with a tiny receive buffer that reads the status line and stops."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0

    @classmethod
    async def open(cls, process: ServiceProcess, headers: dict[str, str], path: str) -> "StalledReader":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", process.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(f"GET {path} HTTP/1.1\r\nHost: keys\r\n{lines}\r\n".encode())
        await writer.drain()
        stalled = cls(reader, writer)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        stalled.status = int(head.split(b" ", 2)[1])
        return stalled

    async def rest(self, timeout: float) -> bytes:
        """Reads again, to the end of what the server sent before it closed the connection."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    def close(self) -> None:
        self.writer.close()


def _export_path(tenant: Tenant) -> str:
    return f"/v1/keys/export.csv?organization_id={tenant.id}"


async def _start(env: dict[str, str], settings) -> ServiceProcess:
    return await ServiceProcess("keys", {**service_env(settings), "RUN_RELAY": "false", **env}).start()


@pytest.fixture(scope="module")
async def big_tenant(pool, world, settings) -> Tenant:
    """A tenant with EXPORT_KEYS keys and an administrator for each test's exports."""
    async with pool.acquire() as conn:
        tenant = await create_tenant(conn, world.root_id, admins=5)  # type: ignore[arg-type]
        await insert_keys(conn, settings, tenant.id, EXPORT_KEYS)
    return tenant


async def _export_audit(pool, admin: str) -> dict:
    rows = await pool.fetch("SELECT details FROM keys.audit_log WHERE actor = $1 AND action = 'export'", admin)
    assert len(rows) == 1, rows
    return rows[0]["details"]  # type: ignore[no-any-return]


async def _open_transactions(pool, login_url: str) -> int:
    """The keys service's connections that are in a transaction now (an export's, while it streams)."""
    return await pool.fetchval(  # type: ignore[no-any-return]
        "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND datname = current_database() "
        "AND xact_start IS NOT NULL",
        urlsplit(login_url).username,
    )


async def _export_ended(pool, login_url: str, admin: str) -> bool:
    """No transaction of the service's is open, and the export's audit row has its end written."""
    if await _open_transactions(pool, login_url):
        return False
    return (await _export_audit(pool, admin))["keys"] > 0  # type: ignore[no-any-return]


async def test_a_reader_that_stops_reading_has_its_export_ended_and_its_connection_released(
    big_tenant: Tenant, settings, pool, as_admin, voice_token
):
    key = (await create_key(as_admin(big_tenant.admins[0]), big_tenant.id))["key"]
    process = await _start(
        {"DB_POOL_SIZE": "1", "DB_ACQUIRE_TIMEOUT": "1s", "EXPORT_STALL_TIMEOUT": "3s", "EXPORT_DEADLINE": "10m"},
        settings,
    )
    try:
        async with httpx.AsyncClient(base_url=process.url) as client:
            admin = Caller.gateway(client, settings, big_tenant.admins[0])
            path = _export_path(big_tenant)
            stalled = await StalledReader.open(process, admin.headers("GET", path), path)
            assert stalled.status == 200
            opened = time.monotonic()
            # Meanwhile the export holds the one connection, in its transaction: other calls wait at most the
            # bound, then get a 503 with Retry-After.
            await eventually(lambda: _holds_one_transaction(pool, settings.database_url), timeout=5)
            busy = await admin.get("/v1/keys", params={"organization_id": str(big_tenant.id)})
            assert_error(busy, 503, "unavailable")
            assert busy.headers["Retry-After"] == "5"
            # Verify has connections of its own.
            started = time.monotonic()
            voice = {"Authorization": f"Bearer {voice_token}"}
            verified = await client.post("/v1/keys/verify", json={"key": key}, headers=voice, timeout=5)
            assert verified.status_code == 200 and verified.json()["valid"] is True, verified.text
            assert time.monotonic() - started < 0.9  # under the administrators' pool's bound (1 s)
            await eventually(lambda: _export_ended(pool, settings.database_url, big_tenant.admins[0]), timeout=15)
            ended = time.monotonic() - opened
            assert ended < 3 + 5, ended  # the stall timeout, and the time to notice it
            listed = await admin.get("/v1/keys", params={"organization_id": str(big_tenant.id), "limit": 1})
            assert listed.status_code == 200, listed.text
            audit = await _export_audit(pool, big_tenant.admins[0])
            assert audit["finished"] is False and 0 < audit["keys"] < EXPORT_KEYS, audit
            # The reader that comes back finds the stream cut off: no chunked encoding's last chunk.
            rest = await stalled.rest(timeout=20)
            assert not rest.endswith(b"0\r\n\r\n")
            stalled.close()
    finally:
        await process.stop()


async def _holds_one_transaction(pool, login_url: str) -> bool:
    return await _open_transactions(pool, login_url) == 1


async def test_an_export_past_its_deadline_is_ended_and_says_it_did_not_finish(big_tenant: Tenant, settings, pool):
    process = await _start({"EXPORT_STALL_TIMEOUT": "10m", "EXPORT_DEADLINE": "3s"}, settings)
    try:
        async with httpx.AsyncClient(base_url=process.url) as client:
            admin = Caller.gateway(client, settings, big_tenant.admins[1])
            path = _export_path(big_tenant)
            stalled = await StalledReader.open(process, admin.headers("GET", path), path)
            assert stalled.status == 200
            opened = time.monotonic()
            await eventually(lambda: _export_ended(pool, settings.database_url, big_tenant.admins[1]), timeout=15)
            assert time.monotonic() - opened < 3 + 5
            audit = await _export_audit(pool, big_tenant.admins[1])
            assert audit["finished"] is False and 0 < audit["keys"] < EXPORT_KEYS, audit
            rest = await stalled.rest(timeout=20)
            assert not rest.endswith(b"0\r\n\r\n")
            stalled.close()
    finally:
        await process.stop()


async def test_exports_beyond_the_administrators_and_the_replicas_limits_are_429_with_retry_after(
    big_tenant: Tenant, settings, pool, world
):
    async with pool.acquire() as conn:
        other = await create_tenant(conn, world.root_id)  # type: ignore[arg-type]
    process = await _start({"EXPORTS_PER_ADMIN": "1", "EXPORTS_PER_REPLICA": "2"}, settings)
    readers: list[StalledReader] = []
    try:
        async with httpx.AsyncClient(base_url=process.url) as client:
            first, second, third = (Caller.gateway(client, settings, a) for a in big_tenant.admins[2:])
            path = _export_path(big_tenant)
            readers.append(await StalledReader.open(process, first.headers("GET", path), path))
            again = await first.get(path)
            assert_error(again, 429, "too_many_requests")
            assert again.headers["Retry-After"] == "30"
            readers.append(await StalledReader.open(process, second.headers("GET", path), path))
            assert [r.status for r in readers] == [200, 200]
            beyond = await third.get(path)
            assert_error(beyond, 429, "too_many_requests")
            assert beyond.headers["Retry-After"] == "30"
            # Another tenant's administrator is refused too: the replica's limit is everyone's.
            outsider = Caller.gateway(client, settings, other.admins[0])
            assert_error(
                await outsider.get(f"/v1/keys/export.csv?organization_id={other.id}"), 429, "too_many_requests"
            )
            # A reader that goes away gives its slot back.
            readers.pop(0).close()

            async def third_exports() -> bool:
                return (await third.get(path)).status_code == 200

            await eventually(third_exports, timeout=10, every=0.5)
    finally:
        for reader in readers:
            reader.close()
        await process.stop()
