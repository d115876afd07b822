"""End-to-end: the keys service, the notifier (when it exists) and the gateway as real processes on a fresh
database seeded with the demo directory, an SMTP server on loopback, and Chromium driven by Playwright.

The keys service announces a `400d` threshold besides the usual ones, so a fresh key (365 days to live)
crosses it at once: its expiry notice really goes out, and the Edit page has a notice history to show.
"""

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiosmtpd.controller import Controller
from playwright.async_api import Browser, BrowserContext, async_playwright

from deploy.local import kafka_access
from services.keys.directory.importer import import_directory, load
from shared.db import create_pool
from shared.migrate import scratch_database
from tests.fixtures.keycloak import (
    Keycloak,
    keycloak_fixture,  # noqa: F401 (the provider, for the AUTH_MODE=oidc console)
)
from tests.fixtures.processes import ROOT, ServiceProcess, free_port
from tests.fixtures.stack import AUDIENCE, ISSUER, JWT_SECRET, SESSION_SECRET, Stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
THRESHOLDS = "400d,30d,14d,7d,3d,1d"
HAS_NOTIFIER = (ROOT / "services/notifier/__main__.py").exists()


class _Accept:
    async def handle_DATA(self, server, session, envelope):
        return "250 accepted"


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[Stack]:
    async with scratch_database(os.environ["DATABASE_URL"], "kw_e2e") as database_url:
        async for running in _services(database_url):
            yield running


async def _services(database_url: str) -> AsyncIterator[Stack]:
    processes: list[ServiceProcess] = []
    smtp = Controller(_Accept(), hostname="127.0.0.1", port=free_port(), server_hostname="e2e-sink")
    smtp.start()
    try:
        # A pooled connection: the services' JSON codecs, which the import's audit rows need.
        pool = await create_pool(database_url, max_size=1)
        try:
            async with pool.acquire() as conn:
                await import_directory(conn, load(ROOT / "deploy/local/demo-directory.yaml"))
                organizations = {
                    r["name"]: str(r["id"]) for r in await conn.fetch("SELECT id, name FROM keys.organizations")
                }
        finally:
            await pool.close()
        topic = f"apikeys.lifecycle.e2e-{uuid4().hex[:10]}"
        await kafka_access.create_topics({topic: 3, f"{topic}.dlq": 1})
        common = {"DATABASE_URL": database_url, "KAFKA_TOPIC": topic}
        keys = ServiceProcess("keys", common | {"EXPIRY_NOTICE_THRESHOLDS": THRESHOLDS, "EXPIRY_WATCH_INTERVAL": "1s"})
        processes.append(await keys.start())
        gateway = ServiceProcess("gateway", {})
        notifier_url = f"http://127.0.0.1:{free_port()}"
        if HAS_NOTIFIER:
            notifier = ServiceProcess(
                "notifier",
                common
                | {
                    "KEYS_URL": keys.url,
                    "SMTP_HOST": "127.0.0.1",
                    "SMTP_PORT": str(smtp.port),
                    "CONSOLE_URL": gateway.url,
                    "NOTIFIER_CONSUMER_GROUP": f"notifier-e2e-{uuid4().hex[:8]}",
                    "SENDER_POLL_INTERVAL": "1s",
                },
            )
            processes.append(await notifier.start())
            notifier_url = notifier.url
        gateway.env.update(
            common
            | {
                "KEYS_URL": keys.url,
                "NOTIFIER_URL": notifier_url,
                "AUTH_MODE": "dev",
                "AUTH_JWT_SECRET": JWT_SECRET,
                "AUTH_ISSUER": ISSUER,
                "AUTH_AUDIENCE": AUDIENCE,
                "SESSION_SECRET": SESSION_SECRET,
            }
        )
        processes.append(await gateway.start())
        await _wait_until_live(gateway)
        yield Stack(gateway.url, database_url, HAS_NOTIFIER, organizations, gateway_env=gateway.env)
    finally:
        for process in reversed(processes):
            await process.stop()
        smtp.stop()


@pytest.fixture(scope="session")
async def oidc_console(stack: Stack, keycloak: Keycloak) -> AsyncIterator[str]:
    """A second gateway on the same services, with AUTH_MODE=oidc at the real provider (deploy/local/keycloak.sh,
    whose realm has the demo directory's administrators): its URL."""
    gateway = ServiceProcess("gateway", stack.gateway_env | keycloak.oidc_env())
    await gateway.start()
    try:
        await _wait_until_live(gateway)
        yield gateway.url
    finally:
        await gateway.stop()


async def _wait_until_live(gateway: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for _ in range(150):
            if (await client.get("/readyz")).json()["checks"].get("live_events") == "ok":
                return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the gateway's live-event consumer never got ready: {gateway.log_tail()}")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run tests/e2e/install-chromium.sh")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def context(browser: Browser, stack: Stack) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 860}, accept_downloads=True)
    ctx.set_default_timeout(10_000)
    yield ctx
    await ctx.close()


@pytest.fixture
async def new_context(browser: Browser, stack: Stack) -> AsyncIterator[Callable[..., Awaitable[BrowserContext]]]:
    """More browsers (a second administrator, a second window), each with cookies of its own."""
    made: list[BrowserContext] = []

    async def make(**options: Any) -> BrowserContext:
        options = {"viewport": {"width": 1280, "height": 860}} | options
        ctx = await browser.new_context(base_url=stack.url, **options)
        ctx.set_default_timeout(10_000)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        await ctx.close()
