"""The published API documents against what the services do: Schemathesis runs every check (`--checks all`)
on every operation of the keys service's and the gateway's /openapi.json, with the services as processes on
a database of their own seeded with the demo directory. Undocumented statuses, media types and headers,
schemas looser than what is enforced, and 405s that leave out methods of the path all fail it; its output
names each mismatch with a curl command that reproduces it.

Other teams and client generators read these documents (docs/contract.md). The exceptions the documents
cannot express are in schemathesis.toml beside this file, each with its reason.
"""

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest

from deploy.local import kafka_access
from services.keys.directory.importer import import_directory, load
from shared.db import create_pool
from shared.migrate import scratch_database
from tests.fixtures.gateway import AUDIENCE, ISSUER, JWT_SECRET, SESSION_SECRET, make_token
from tests.fixtures.processes import ROOT, ServiceProcess, free_port

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
SCHEMATHESIS = Path(sys.executable).with_name("st")
# Examples per operation, and a fixed seed: the same requests every run (about a minute for both services on
# two cores); a new seed explores further when the documents change.
MAX_EXAMPLES = 60
SEED = 20261205
TIMEOUT_SECONDS = 300
# The demo directory's system-level customer administrator: reaches every organization and key.
ADMINISTRATOR = "admin"


@dataclass
class Services:
    keys: ServiceProcess
    gateway: ServiceProcess


@pytest.fixture(scope="module")
async def services() -> AsyncIterator[Services]:
    async with scratch_database(os.environ["DATABASE_URL"], "kw_openapi") as database_url:
        pool = await create_pool(database_url, min_size=1, max_size=1)  # with the services' JSON codecs
        try:
            async with pool.acquire() as conn:
                await import_directory(conn, load(ROOT / "deploy/local/demo-directory.yaml"))
        finally:
            await pool.close()
        topic = f"apikeys.lifecycle.openapi-{uuid4().hex[:10]}"
        await kafka_access.create_topics({topic: 1})
        keys = await ServiceProcess("keys", {"DATABASE_URL": database_url, "KAFKA_TOPIC": topic}).start()
        try:
            gateway = ServiceProcess(
                "gateway",
                {
                    "KEYS_URL": keys.url,
                    "NOTIFIER_URL": f"http://127.0.0.1:{free_port()}",  # nothing answers: notices_unavailable
                    "KAFKA_TOPIC": topic,
                    "AUTH_MODE": "jwt",
                    "AUTH_JWT_SECRET": JWT_SECRET,
                    "AUTH_ISSUER": ISSUER,
                    "AUTH_AUDIENCE": AUDIENCE,
                    "SESSION_SECRET": SESSION_SECRET,
                    # A live-update stream ends after a second, so that a check reads its whole answer.
                    "EVENTS_STREAM_LIFETIME": "1s",
                    # Development secrets (deploy/local/dev.env): production rules would refuse them.
                    "KEYWARD_ENV": "dev",
                },
            )
            await gateway.start()
            try:
                yield Services(keys, gateway)
            finally:
                await gateway.stop()
        finally:
            await keys.stop()


async def schemathesis(url: str, workdir: Path, *options: str, env: dict[str, str] | None = None) -> str:
    """Runs `st run` on the document at `url`; fails the test with its report unless every check passed."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        *options,
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"schemathesis did not finish in {TIMEOUT_SECONDS} s")
    report = output.decode(errors="replace")
    assert process.returncode == 0, f"the document at {url} and the service disagree:\n{report}"
    print(f"{url}: schemathesis passed in {time.monotonic() - started:.0f} s")
    return report


async def test_the_keys_service_does_what_its_openapi_document_says(services: Services, tmp_path: Path) -> None:
    await schemathesis(
        services.keys.url,
        tmp_path,
        # A service token and a fresh X-Acting-Admin for each request (openapi_auth.py).
        env={"SCHEMATHESIS_HOOKS": str(HERE / "openapi_auth.py"), "KEYWARD_CONFORMANCE_ADMIN": ADMINISTRATOR},
    )


async def test_the_gateway_does_what_its_openapi_document_says(services: Services, tmp_path: Path) -> None:
    token = make_token(ADMINISTRATOR, exp=int(time.time()) + TIMEOUT_SECONDS + 60)
    await schemathesis(services.gateway.url, tmp_path, "--header", f"Authorization: Bearer {token}")
