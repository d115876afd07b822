"""The notifier's integration world: its own database and topic, a keys service living a one-minute key
lifecycle, the notifier as a real process, and an SMTP server on loopback that records what it receives.

A database of its own, because the session's in-process keys service watches with the default thresholds
(30d..1d) and would announce a one-minute key at once; and because a notifier works every open notice of
its database, which must not be another test's.
"""

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from deploy.local import kafka_access
from shared.db import create_pool
from shared.kafka import idempotent_producer
from shared.migrate import scratch_database
from tests.fixtures.directory import Tenant, create_admin, create_org, create_tenant
from tests.fixtures.events import Publisher, key_fields, store_key
from tests.fixtures.mail import Sink
from tests.fixtures.notifier import CLAIM_TIMEOUT_SECONDS, Notifier
from tests.fixtures.processes import ServiceProcess


@pytest.fixture(scope="session")
async def nf_database_url() -> AsyncIterator[str]:
    async with scratch_database(os.environ["DATABASE_URL"], "kw_test_notifier") as url:
        yield url


@pytest.fixture(scope="session")
async def nf_topic() -> str:
    name = f"apikeys.lifecycle.test-notifier-{uuid4().hex[:10]}"
    await kafka_access.create_topics({name: 3, f"{name}.dlq": 1})
    return name


@pytest.fixture(scope="session")
async def nf_pool(nf_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(nf_database_url, max_size=5)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def nf_root(nf_pool: asyncpg.Pool) -> tuple[UUID, str]:
    """The system root and a system-level customer administrator, who must never get a notice."""
    async with nf_pool.acquire() as conn:
        root = await create_org(conn, None, "Keyward")
        admin = await create_admin(conn, root["id"], level="system")
    return root["id"], admin


@pytest.fixture
def make_tenant(nf_pool: asyncpg.Pool, nf_root: tuple[UUID, str]) -> Callable[..., Awaitable[Tenant]]:
    async def make(admins: int = 2) -> Tenant:
        async with nf_pool.acquire() as conn:
            return await create_tenant(conn, nf_root[0], admins=admins)

    return make


@pytest.fixture
def make_key(nf_pool: asyncpg.Pool) -> Callable[..., Awaitable[dict]]:
    """A key of `tenant`'s org-1 (`key_fields`' arguments) that the keys service knows: the notifier e-mails
    about no other."""

    async def make(tenant: Tenant, **overrides: object) -> dict:
        async with nf_pool.acquire() as conn:
            return await store_key(conn, key_fields(tenant, **overrides))  # type: ignore[arg-type]

    return make


# -- the SMTP server -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sink() -> AsyncIterator[Sink]:
    s = Sink()
    s.start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _sink_behaves(sink: Sink) -> AsyncIterator[None]:
    """Each test starts with a fast, accepting, running SMTP server."""
    yield
    sink.handler.delay, sink.handler.on_rcpt, sink.handler.on_data = 0.0, None, None
    sink.handler.refuse.clear()
    if sink._controller is None:
        sink.start()


# -- the services ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lifecycle_env(nf_database_url: str, nf_topic: str) -> dict[str, str]:
    return {
        "DATABASE_URL": nf_database_url,
        "KAFKA_TOPIC": nf_topic,
        "KEY_LIFETIME": "60s",
        "EXPIRY_NOTICE_THRESHOLDS": "30s,14s,7s,3s,1s",
        "EXPIRY_WATCH_INTERVAL": "1s",
    }


@pytest.fixture(scope="session")
async def nf_keys(lifecycle_env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    process = await ServiceProcess("keys", lifecycle_env).start()
    yield process
    await process.stop()


@pytest.fixture(scope="session")
async def notifier(lifecycle_env: dict[str, str], nf_keys: ServiceProcess, sink: Sink) -> AsyncIterator[Notifier]:
    env = {
        **lifecycle_env,
        "KEYS_URL": nf_keys.url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(sink.port),
        "SMTP_TIMEOUT": "1s",
        "NOTIFIER_CONSUMER_GROUP": f"notifier-test-{uuid4().hex[:8]}",
        "NOTICE_CLAIM_TIMEOUT": f"{CLAIM_TIMEOUT_SECONDS}s",
        "NOTICE_LEASE": "2s",
        "NOTICE_RETRY_INITIAL": "1s",
        "NOTICE_RETRY_MAX": "2s",
        "SENDER_POLL_INTERVAL": "1s",
        "RECIPIENTS_CACHE_TTL": "1s",
        "CONSOLE_URL": "https://console.keyward.test",
    }
    handle = Notifier(env)
    await handle.process.start()
    yield handle
    await handle.stop()


@pytest.fixture(scope="session")
def gateway_token() -> str:
    """The gateway's token at the notifier (NOTIFIER_TOKEN; the notifier's NOTICES_TOKENS holds it)."""
    return os.environ["NOTIFIER_TOKEN"]


@pytest.fixture(scope="session")
async def notices_api(notifier: Notifier, gateway_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=notifier.url, headers={"Authorization": f"Bearer {gateway_token}"}, timeout=10
    ) as client:
        yield client


# -- events ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def producer() -> AsyncIterator[AIOKafkaProducer]:
    p = idempotent_producer(kafka_access.access(), "notifier-tests")
    await p.start()
    yield p
    await p.stop()


@pytest.fixture(scope="session")
def publish(producer: AIOKafkaProducer, nf_topic: str, notifier: Notifier) -> Publisher:
    return Publisher(producer, nf_topic)
