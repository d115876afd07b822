"""Verify through PgBouncer keeps answering while administrators' transactions hold every server connection of the
keys service's pool there (issue 18): its pool goes to PgBouncer pools of its own (VERIFY_DATABASE_URL; locally the
`verify` instance of deploy/local/pgbouncer.sh, in Kubernetes the database entry keyward_verify).

An administrators' transaction (an export's, for as long as it streams) holds a server connection in transaction
pooling; once they hold them all, a verify sent to the same PgBouncer pool waits in PgBouncer's queue, where no
DB_ACQUIRE_TIMEOUT bounds it (the client connection was had at once).
"""

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from deploy.local import runenv
from services.keys.config import Settings
from shared.migrate import scratch_database
from tests.fixtures.directory import create_org, create_tenant
from tests.fixtures.keys import Caller, create_key
from tests.fixtures.processes import ServiceProcess, database_login

PORT = os.environ.get("KEYWARD_PGBOUNCER_PORT", "56432")
VERIFY_PORT = os.environ.get("KEYWARD_PGBOUNCER_VERIFY_PORT", "56433")
THROUGH_PGBOUNCER = {
    "KEYWARD_PGBOUNCER": "1",
    "KEYWARD_PGBOUNCER_PORT": PORT,
    "KEYWARD_PGBOUNCER_VERIFY_PORT": VERIFY_PORT,
}


def pool_size(port: str) -> int:
    """A PgBouncer instance's server connections for one database and login (its admin console's SHOW CONFIG)."""
    owner = httpx.URL(os.environ["DATABASE_URL"])
    out = subprocess.run(
        ["psql", "-X", "-A", "-t", "-F", "|", "-h", "127.0.0.1", "-p", port, "-U", owner.username, "pgbouncer"],
        input="SHOW CONFIG;",
        capture_output=True,
        text=True,
        timeout=10,
        env={**os.environ, "PGPASSWORD": owner.password or ""},
    )
    assert out.returncode == 0, out.stderr
    (size,) = [line.split("|")[1] for line in out.stdout.splitlines() if line.startswith("default_pool_size|")]
    return int(size)


@pytest.fixture(scope="module")
async def pgb_url() -> AsyncIterator[str]:
    async with scratch_database(os.environ["DATABASE_URL"], "kw_test_verify_pgbouncer") as url:
        yield url


@pytest.fixture
async def keys(pgb_url: str) -> AsyncIterator[ServiceProcess]:
    env = {"DATABASE_URL": pgb_url, "RUN_RELAY": "false", "DB_ACQUIRE_TIMEOUT": "1s", **THROUGH_PGBOUNCER}
    process = await ServiceProcess("keys", env).start()
    yield process
    await process.stop()


async def hold_every_server_connection(pgb_url: str) -> list[asyncpg.Connection]:
    """The keys service's login, in open transactions through the main PgBouncer, one per server connection its
    pool there has: as many exports and administrators' calls at once."""
    url = runenv.via_pgbouncer(database_login("keys", pgb_url), PORT).split("?")[0]
    held = []
    for _ in range(pool_size(PORT)):
        conn = await asyncpg.connect(url, statement_cache_size=0)
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT 1")
        held.append(conn)
    return held


async def test_verify_answers_while_administrators_hold_every_server_connection_at_pgbouncer(
    keys: ServiceProcess, pgb_url: str, settings: Settings
):
    owner = await asyncpg.connect(pgb_url)
    try:
        root = await create_org(owner, None, "Keyward")
        tenant = await create_tenant(owner, root["id"], admins=1)
    finally:
        await owner.close()
    async with httpx.AsyncClient(base_url=keys.url, timeout=10) as http:
        admin = Caller.gateway(http, settings, tenant.admins[0])
        key = (await create_key(admin, tenant.orgs["org-1"]))["key"]
        voice = {"Authorization": f"Bearer {os.environ['SERVICE_TOKENS'].split('voice:')[1].split(',')[0]}"}
        held = await hold_every_server_connection(pgb_url)
        try:
            # The administrators' pool at PgBouncer is all taken: their next call waits there.
            listed = asyncio.ensure_future(admin.get("/v1/keys", params={"organization_id": str(tenant.id)}))
            await asyncio.sleep(0.5)
            assert not listed.done()
            for _ in range(20):
                answer = await asyncio.wait_for(http.post("/v1/keys/verify", json={"key": key}, headers=voice), 3)
                assert answer.status_code == 200, answer.text
                assert answer.json()["valid"] is True
        finally:
            for conn in held:
                await conn.close()
        # Released, the administrators' call goes through.
        assert (await asyncio.wait_for(listed, 10)).status_code == 200


def test_the_local_stack_gives_verify_a_pgbouncer_of_its_own():
    environ = {"KEYWARD_PGBOUNCER": "1", "RUN_RELAY": "false"} | {
        k: v for k, v in os.environ.items() if k.endswith("DATABASE_URL")
    }
    env = runenv.service_environment("keys", environ)
    assert env["DATABASE_URL"].endswith(f":{PORT}/keyward?pgbouncer=transaction")
    assert env["VERIFY_DATABASE_URL"].endswith(f":{VERIFY_PORT}/keyward?pgbouncer=transaction")
    # Direct (the keys service relaying itself): verify's pool connects where the others do.
    assert "VERIFY_DATABASE_URL" not in runenv.service_environment("keys", environ | {"RUN_RELAY": "true"})
