"""Integration tests: a fresh database and a fresh topic per run, on the real PostgreSQL and Kafka."""

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import asyncpg
import httpx
import jsonschema
import pytest
from aiokafka import AIOKafkaConsumer
from asgi_lifespan import LifespanManager

from deploy.local import kafka_access
from services.keys.app import create_app
from services.keys.config import Settings
from shared.auth import parse_service_tokens
from shared.db import create_pool
from shared.events import CloudEvent, decode
from shared.events.schemagen import SCHEMA_DIR
from shared.migrate import scratch_database
from tests.fixtures.directory import Tenant, create_admin, create_org, create_tenant
from tests.fixtures.keys import Caller
from tests.fixtures.processes import ServiceProcess, database_login, kafka_login, service_env


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with scratch_database(os.environ["DATABASE_URL"], "kw_test") as url:
        yield url


@pytest.fixture(scope="session")
async def topic() -> str:
    name = f"apikeys.lifecycle.test-{uuid4().hex[:10]}"
    await kafka_access.create_topics({name: 3})
    return name


@pytest.fixture(scope="session")
def settings(database_url: str, topic: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        database_url=database_login("keys", database_url),
        **kafka_login("keys"),
        kafka_topic=topic,
        expiry_watch_interval=timedelta(seconds=1),
        usage_flush_interval=timedelta(seconds=1),
        log_format="text",
    )


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, max_size=10)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def keys_app(settings: Settings) -> AsyncIterator[object]:
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        yield manager.app


@pytest.fixture(scope="session")
async def keys_server(settings: Settings) -> AsyncIterator[ServiceProcess]:
    """The keys service as a real process on a free port, for other services' tests."""
    process = await ServiceProcess("keys", service_env(settings)).start()
    yield process
    await process.stop()


@pytest.fixture(scope="session")
async def http(keys_app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=keys_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://keys") as client:
        yield client


@pytest.fixture(scope="session")
def as_admin(http: httpx.AsyncClient, settings: Settings) -> Callable[[str | None], Caller]:
    return lambda username: Caller.gateway(http, settings, username)


@pytest.fixture(scope="session")
def voice_token(settings: Settings) -> str:
    return parse_service_tokens(settings.service_tokens)["voice"]


@dataclass
class World:
    root_id: object
    system_admin: str


@pytest.fixture(scope="session")
async def world(pool: asyncpg.Pool) -> World:
    async with pool.acquire() as conn:
        root = await create_org(conn, None, "Keyward")
        admin = await create_admin(conn, root["id"], level="system")
    return World(root_id=root["id"], system_admin=admin)


@pytest.fixture
async def tenant(pool: asyncpg.Pool, world: World) -> Tenant:
    async with pool.acquire() as conn:
        return await create_tenant(conn, world.root_id)  # type: ignore[arg-type]


@pytest.fixture
async def other_tenant(pool: asyncpg.Pool, world: World) -> Tenant:
    async with pool.acquire() as conn:
        return await create_tenant(conn, world.root_id)  # type: ignore[arg-type]


_SCHEMAS = {p.name.removesuffix(".json"): json.loads(p.read_text()) for p in SCHEMA_DIR.glob("*.json")}


@dataclass
class EventLog:
    """Every event on the test topic, each checked against its JSON Schema as it arrives."""

    events: list[CloudEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    raw: list[dict[str, object]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_for(self, predicate: Callable[[list[CloudEvent]], bool], timeout: float = 20.0) -> list[CloudEvent]:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: predicate(self.events)), timeout)
        return self.events

    def about(self, key_id: object) -> list[CloudEvent]:
        assert not self.errors, self.errors
        return [e for e in self.events if e.subject == str(key_id)]


@pytest.fixture(scope="session")
async def event_log(topic: str) -> AsyncIterator[EventLog]:
    log = EventLog()
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_access.access().options(),
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()

    async def collect() -> None:
        async for message in consumer:
            headers = list(message.headers)
            try:
                event = decode(message.key, message.value, headers)
                jsonschema.validate(
                    json.loads(message.value),
                    _SCHEMAS[event.type],
                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
                )
            except Exception as exc:  # recorded: a test asserting on events fails on it
                log.errors.append(f"offset {message.offset}: {exc}")
                continue
            async with log.changed:
                log.events.append(event)
                log.raw.append({"key": message.key, "headers": dict(headers), "partition": message.partition})
                log.changed.notify_all()

    task = asyncio.create_task(collect())
    yield log
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await consumer.stop()


ROOT = Path(__file__).resolve().parents[2]
