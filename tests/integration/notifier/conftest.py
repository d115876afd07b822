"""The notifier's integration world: its own database and topic, a keys service living a one-minute key
lifecycle, the notifier as a real process, and an SMTP server on loopback that records what it receives.

A database of its own, because the session's in-process keys service watches with the default thresholds
(30d..1d) and would announce a one-minute key at once; and because a notifier works every open notice of
its database, which must not be another test's.
"""

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller

from shared.auth import parse_service_tokens
from shared.db import create_pool
from shared.events import CloudEvent, KeyDeleted, KeyExpiring, encode
from shared.kafka import ensure_topics, idempotent_producer
from shared.migrate import scratch_database
from tests.fixtures.directory import Tenant, create_admin, create_org, create_tenant
from tests.fixtures.processes import ServiceProcess, free_port
from tests.fixtures.random_refs import key_name

CLAIM_TIMEOUT_SECONDS = 5


@pytest.fixture(scope="session")
async def nf_database_url() -> AsyncIterator[str]:
    async with scratch_database(os.environ["DATABASE_URL"], "kw_test_notifier") as url:
        yield url


@pytest.fixture(scope="session")
async def nf_topic() -> str:
    name = f"apikeys.lifecycle.test-notifier-{uuid4().hex[:10]}"
    await ensure_topics(os.environ["KAFKA_BOOTSTRAP_SERVERS"], {name: 3, f"{name}.dlq": 1})
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


# -- the SMTP server -------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def key_id(self) -> str:
        return str(self.message["X-Keyward-Key-Id"])

    @property
    def threshold(self) -> int:
        return int(str(self.message["X-Keyward-Threshold-Seconds"]))


@dataclass
class RecordingHandler:
    """Keeps every message; can be slowed down, refuse addresses, and run a hook on each RCPT."""

    messages: list[Received] = field(default_factory=list)
    rcpts: list[str] = field(default_factory=list)
    # Greetings received: one per SMTP connection.
    ehlos: int = 0
    connections: list = field(default_factory=list)
    delay: float = 0.0
    refuse: dict[str, str] = field(default_factory=dict)
    on_rcpt: Callable[[str], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.ehlos += 1
            self.connections.append(server)
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpts.append(address)
        if self.on_rcpt is not None:
            self.on_rcpt(address)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        message = message_from_bytes(envelope.original_content or envelope.content, policy=default)
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


class Sink:
    """aiosmtpd on a loopback port in this process; stop() and start() it to play an SMTP outage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = RecordingHandler()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, server_hostname="sink")
        self._controller.start()

    def mute_open_connections(self) -> None:
        """The connections open now stay open but are never answered again (a server that hangs, a dropped
        route); new ones are served as usual."""
        assert self._controller is not None
        with self.handler.lock:
            open_now = [c for c in self.handler.connections if c.transport is not None]
        for connection in open_now:
            self._controller.loop.call_soon_threadsafe(connection.transport.pause_reading)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str, key_id: object | None = None) -> list[Received]:
        with self.handler.lock:
            return [
                m
                for m in self.handler.messages
                if address in m.rcpt_tos and (key_id is None or m.key_id == str(key_id))
            ]

    def all(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    def about(self, key_id: object) -> list[Received]:
        with self.handler.lock:
            return [m for m in self.handler.messages if m.key_id == str(key_id)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the expected e-mails did not arrive")
            await asyncio.sleep(0.05)


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
    sink.handler.delay, sink.handler.on_rcpt = 0.0, None
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


class Notifier:
    """The notifier process, which a test may kill, restart, or run a second replica of."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process = ServiceProcess("notifier", env)
        self.replicas: list[ServiceProcess] = []

    @property
    def url(self) -> str:
        return self.process.url

    async def restart(self, *, graceful: bool = False) -> None:
        if graceful:
            await self.process.stop()
        else:
            self.process.kill()
        self.process = await ServiceProcess("notifier", self.env, port=self.process.port).start()

    async def replica(self) -> ServiceProcess:
        process = await ServiceProcess("notifier", self.env).start()
        self.replicas.append(process)
        return process

    async def stop(self) -> None:
        for process in [*self.replicas, self.process]:
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
    return parse_service_tokens(os.environ["SERVICE_TOKENS"])["gateway"]


@pytest.fixture(scope="session")
async def notices_api(notifier: Notifier, gateway_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=notifier.url, headers={"Authorization": f"Bearer {gateway_token}"}, timeout=10
    ) as client:
        yield client


# -- events ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def producer() -> AsyncIterator[AIOKafkaProducer]:
    p = idempotent_producer(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "notifier-tests")
    await p.start()
    yield p
    await p.stop()


@dataclass
class Publisher:
    producer: AIOKafkaProducer
    topic: str

    async def event(self, event: CloudEvent) -> CloudEvent:
        key, value, headers = encode(event)
        await self.producer.send_and_wait(self.topic, value=value, key=key, headers=headers)
        return event

    async def raw(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        await self.producer.send_and_wait(self.topic, value=value, key=key, headers=headers)


@pytest.fixture(scope="session")
def publish(producer: AIOKafkaProducer, nf_topic: str, notifier: Notifier) -> Publisher:
    return Publisher(producer, nf_topic)


def key_fields(tenant: Tenant, key_id: UUID | None = None, name: str | None = None, days: int = 30) -> dict:
    now = datetime.now(UTC)
    return {
        "key_id": key_id or uuid4(),
        "name": name or key_name(),
        "organization_id": tenant.orgs["org-1"],
        "tenant_id": tenant.id,
        "created_by": tenant.admins[0],
        "created_at": now - timedelta(days=335),
        "expires_at": now + timedelta(days=days),
        "key_display": "kw_live_ab12…9f3c",
    }


def expiring(fields: dict, days: int) -> CloudEvent:
    return CloudEvent.of(KeyExpiring(**fields, threshold_seconds=days * 86400, days_left=days))


def deleted(fields: dict) -> CloudEvent:
    return CloudEvent.of(KeyDeleted(**fields, reason="manual", deleted_by=str(fields["created_by"])))


def email_of(username: str) -> str:
    return f"{username}@example.com"


async def notices(api: httpx.AsyncClient, key_id: object) -> list[dict]:
    response = await api.get(f"/v1/keys/{key_id}/notices")
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def wait_for_notices(
    api: httpx.AsyncClient, key_id: object, predicate: Callable[[list[dict]], bool], timeout: float = 30.0
) -> list[dict]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        items = await notices(api, key_id)
        if predicate(items):
            return items
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"the notices never matched: {items}")
        await asyncio.sleep(0.2)
