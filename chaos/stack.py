"""The chaos run's own stack: the 3-broker Kafka, a PostgreSQL of its own, toxiproxy in front of both, an SMTP sink
that can refuse, a fresh database and topic, and two replicas of every service, each a process that a fault may kill.

Replica i of the notifier, the reaper and the gateway talk to keys replica i (as pods behind a Service would
reach one of them); each service replica reaches PostgreSQL through a toxiproxy proxy of its own (`pg-<replica>`),
and each broker through one too (`kafka-<replica>-<node>`, at the broker's proxied listener of the replica's slot:
deploy/local/kafka-cluster.sh), so that a fault can slow down or cut one replica's database or Kafka connections,
or every replica's connections to one broker.

The run's PostgreSQL is a cluster of its own (deploy/local/postgres.sh with KEYWARD_PG_HOME, under
.local/chaos/postgres, port 29432), with the main stack's roles: its fault stops that one, never the main stack's.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiosmtpd.controller import Controller

from deploy.local import runenv
from services.keys.directory.importer import import_directory, load
from shared.db import create_pool
from shared.kafka import KafkaAccess
from shared.migrate import migrate_all

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SH = ROOT / "deploy/local/kafka-cluster.sh"
KAFKA_SH = ROOT / "deploy/local/kafka.sh"
POSTGRES_SH = ROOT / "deploy/local/postgres.sh"
HOME = ROOT / ".local/chaos"
TOXIPROXY_PORT = 29474
# The run's own PostgreSQL (deploy/local/postgres.sh, its data under .local/chaos/postgres).
PG_PORT = 29432
PG_ENV = {"KEYWARD_PG_HOME": str(HOME / "postgres"), "KEYWARD_PG_PORT": str(PG_PORT)}
# The replicas in the order of their Kafka slots (the brokers' proxied listeners PROXY1..8: kafka-cluster.sh).
REPLICAS = tuple(f"{s}-{i}" for s in ("keys", "notifier", "reaper", "gateway") for i in (1, 2))
# The run's topic: as many partitions as the lifecycle topic, three replicas each.
PARTITIONS = 6
DIRECTORY = Path(__file__).with_name("directory.yaml")
# The administrators of directory.yaml: each gets every notice of the tenant's keys.
ADMINS = ("chaos-ada", "chaos-bob")
TENANT = "Keyward/Chaos Tenant"
VOICE_TOKEN_NAME = "voice"
JWT_SECRET = "chaos-gateway-jwt-secret-0123456789abcdef"
ISSUER = "https://idp.chaos.test"
AUDIENCE = "keyward-console"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Replica:
    """One service replica as a process (`python -m services.<service> serve`), restartable on its port."""

    def __init__(self, service: str, index: int, env: dict[str, str], logs: Path, port: int | None = None) -> None:
        self.service, self.index = service, index
        self.name = f"{service}-{index}"
        self.port = port or free_port()
        whole = {**os.environ, **env, "PORT": str(self.port), "LOG_FORMAT": "text"}
        self.env = runenv.service_environment(service, whole)
        self.log_path = logs / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    async def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {time.strftime('%H:%M:%S')} ====\n".encode())
            log.flush()
            self.process = subprocess.Popen(  # noqa: ASYNC220 (instant; kill()/poll() work outside the loop)
                [sys.executable, "-m", f"services.{self.service}", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        self.started_at = time.monotonic()
        self.starts += 1
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}: see {self.log_path}")
                try:
                    if (await client.get(f"{self.url}/healthz", timeout=1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.name} did not answer /healthz in {timeout}s: see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL, as a crashed node."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    async def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Mail:
    """One accepted e-mail: a single notice, or a digest (`digest`: its X-Keyward-Digest-Id) of several."""

    at: float
    notices: list[tuple[str, int]]  # (key id, threshold seconds)
    recipients: list[str]
    digest: str | None = None


def notices_of(message: EmailMessage) -> tuple[list[tuple[str, int]], str | None]:
    """The notices an e-mail carries and its digest id (None: a single e-mail), as its headers name them:
    X-Keyward-Key-Id and X-Keyward-Threshold-Seconds, or a digest's X-Keyward-Notices (`key_id/threshold, ...`,
    as many as X-Keyward-Digest-Size says). Raises ValueError for an e-mail that names them in neither way."""
    digest = message["X-Keyward-Digest-Id"]
    if digest is None:
        key_id, threshold = message["X-Keyward-Key-Id"], message["X-Keyward-Threshold-Seconds"]
        if key_id is None or threshold is None:
            raise ValueError("names no key and threshold")
        return [(str(key_id).strip(), int(str(threshold)))], None
    listed = message["X-Keyward-Notices"]
    if listed is None:
        raise ValueError(f"digest {digest} names no notices")
    notices = []
    for entry in str(listed).split(","):
        key_id, _, threshold = entry.strip().partition("/")
        notices.append((key_id, int(threshold)))
    size = message["X-Keyward-Digest-Size"]
    if size is None or int(str(size)) != len(notices) or len(set(notices)) != len(notices):
        raise ValueError(f"digest {digest} names {len(notices)} notices, {len(set(notices))} distinct, of {size}")
    return notices, str(digest).strip()


@dataclass
class SinkHandler:
    """Accepts every e-mail and records it, or answers 451 (a transient failure) while `refusing`."""

    received: list[Mail] = field(default_factory=list)
    refused: int = 0
    refusing: bool = False
    # Accepted e-mails whose headers do not say which notices they carry: the checker fails the run if any.
    unattributed: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if self.refusing:
            self.refused += 1
            return "451 4.3.0 chaos: try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.refusing:
            self.refused += 1
            return "451 4.3.0 chaos: try again later"
        message = message_from_bytes(envelope.original_content or envelope.content, policy=default)
        try:
            notices, digest = notices_of(message)  # type: ignore[arg-type]
        except ValueError as exc:
            self.unattributed.append(f"{message['Subject']}: {exc}")
            return "250 accepted"
        self.received.append(Mail(time.time(), notices, [str(r).lower() for r in envelope.rcpt_tos], digest))
        return "250 accepted"


async def sh(*argv: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    if check and process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({process.returncode}):\n{text[-3000:]}")
    return text


class Toxiproxy:
    """toxiproxy-server (chaos/install-toxiproxy.sh) and its HTTP API."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.process: subprocess.Popen[bytes] | None = None
        self.api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{TOXIPROXY_PORT}", timeout=5)

    async def start(self) -> None:
        binary = (await sh("bash", str(ROOT / "chaos/install-toxiproxy.sh"))).strip().splitlines()[-1]
        with (self.logs / "toxiproxy.log").open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220
                [binary, "-host", "127.0.0.1", "-port", str(TOXIPROXY_PORT)], stdout=log, stderr=log
            )
        for _ in range(100):
            try:
                if (await self.api.get("/version")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError("toxiproxy did not start")

    async def proxy(self, name: str, upstream: str) -> int:
        port = free_port()
        body = {"name": name, "listen": f"127.0.0.1:{port}", "upstream": upstream, "enabled": True}
        response = await self.api.post("/proxies", json=body)
        response.raise_for_status()
        return port

    async def fixed_proxy(self, name: str, listen: int, upstream: str) -> None:
        await self.api.delete(f"/proxies/{name}")  # one left by a run that was killed
        body = {"name": name, "listen": f"127.0.0.1:{listen}", "upstream": upstream, "enabled": True}
        (await self.api.post("/proxies", json=body)).raise_for_status()

    async def latency(self, names: list[str], ms: int) -> None:
        toxic = {
            "name": "latency",
            "type": "latency",
            "stream": "downstream",
            "attributes": {"latency": ms, "jitter": ms // 4},
        }
        for name in names:
            (await self.api.post(f"/proxies/{name}/toxics", json=toxic)).raise_for_status()

    async def heal(self, names: list[str]) -> None:
        for name in names:
            await self.api.delete(f"/proxies/{name}/toxics/latency")
            (await self.api.post(f"/proxies/{name}", json={"enabled": True})).raise_for_status()

    async def cut(self, names: list[str]) -> None:
        """Disabled, a proxy closes its connections and accepts none."""
        for name in names:
            (await self.api.post(f"/proxies/{name}", json={"enabled": False})).raise_for_status()

    async def stop(self) -> None:
        await self.api.aclose()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclass
class Stack:
    database_url: str
    topic: str
    bootstrap: str
    replicas: dict[str, Replica]
    sink: SinkHandler
    toxiproxy: Toxiproxy
    organization_id: str
    key_lifetime: float
    thresholds: list[int]
    reaper_interval: float
    voice_token: str
    logs: Path

    def by_service(self, service: str) -> list[Replica]:
        return [r for r in self.replicas.values() if r.service == service]

    def admin_kafka(self) -> KafkaAccess:
        return KafkaAccess(self.bootstrap, "SASL_PLAINTEXT", "admin", os.environ["KAFKA_ADMIN_PASSWORD"])

    def token(self, username: str) -> str:
        import jwt

        now = int(time.time())
        claims = {"sub": username, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3000}
        return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def _on_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def start_postgres() -> str:
    """The run's own PostgreSQL, started (or found running) with the main stack's roles; its owner's DSN."""
    return (await sh("bash", str(POSTGRES_SH), "start", env=PG_ENV)).strip().splitlines()[-1]


async def stop_postgres() -> None:
    await sh("bash", str(POSTGRES_SH), "stop", env=PG_ENV, check=False)


def postgres_pid() -> int | None:
    """The run's postmaster (for the memory check)."""
    try:
        first = (HOME / "postgres/data/postmaster.pid").read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


async def kafka_proxies() -> dict[str, list[tuple[int, int, int]]]:
    """Each replica's (node, broker's port, proxy's port) of its slot's proxied listeners (kafka-cluster.sh)."""
    slots: dict[str, list[tuple[int, int, int]]] = {name: [] for name in REPLICAS}
    for line in (await sh("bash", str(CLUSTER_SH), "proxies")).split("\n"):
        if line.strip():
            slot, node, port, advertised = (int(x) for x in line.split())
            if slot <= len(REPLICAS):
                slots[REPLICAS[slot - 1]].append((node, port, advertised))
    return slots


async def admin_execute(owner_url: str, statement: str) -> None:
    """One statement as the owner on a connection of its own (the run's PostgreSQL fault breaks any it held)."""
    for attempt in range(30):
        try:
            conn = await asyncpg.connect(owner_url, timeout=5)
            break
        except (OSError, asyncpg.PostgresError):
            if attempt == 29:
                raise
            await asyncio.sleep(1)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def running_stack(
    *,
    key_lifetime: int,
    thresholds: list[int],
    reaper_interval: int,
    logs: Path,
    digest_min: int = 3,
    digest_window: int = 600,
) -> AsyncIterator[Stack]:
    await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
    bootstrap = (await sh("bash", str(CLUSTER_SH), "start")).strip().splitlines()[-1]
    owner_url = await start_postgres()
    name = f"kw_chaos_{uuid4().hex[:10]}"
    await admin_execute(owner_url, f'CREATE DATABASE "{name}"')
    database_url = _on_database(owner_url, name)
    toxiproxy = Toxiproxy(logs)
    replicas: dict[str, Replica] = {}
    smtp = Controller(SinkHandler(), hostname="127.0.0.1", port=free_port(), server_hostname="chaos-sink")
    try:
        await migrate_all(database_url, [])
        pool = await create_pool(database_url, max_size=1)
        try:
            async with pool.acquire() as conn:
                await import_directory(conn, load(DIRECTORY))
                organization_id = str(
                    await conn.fetchval("SELECT id FROM keys.organizations WHERE name = 'Chaos Team'")
                )
        finally:
            await pool.close()
        topic = f"apikeys.lifecycle.chaos-{uuid4().hex[:10]}"
        kafka = KafkaAccess(bootstrap, "SASL_PLAINTEXT", "admin", os.environ["KAFKA_ADMIN_PASSWORD"])
        admin = AIOKafkaAdminClient(**kafka.options())
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, PARTITIONS, 3), NewTopic(f"{topic}.dlq", 1, 3)])
        finally:
            await admin.close()
        admin_port = (await sh("bash", str(CLUSTER_SH), "admin-bootstrap")).strip().split(",")[0].rsplit(":", 1)[1]
        await sh("bash", str(KAFKA_SH), "grant", topic, env={"KEYWARD_KAFKA_ADMIN_PORT": admin_port})

        smtp.start()
        await toxiproxy.start()
        upstream = f"127.0.0.1:{PG_PORT}"
        # Each replica's Kafka clients bootstrap from, and are sent by the metadata to, its own proxies.
        kafka_bootstrap: dict[str, str] = {}
        for replica_name, slot in (await kafka_proxies()).items():
            for node, port, advertised in slot:
                await toxiproxy.fixed_proxy(f"kafka-{replica_name}-{node}", advertised, f"127.0.0.1:{port}")
            kafka_bootstrap[replica_name] = ",".join(f"127.0.0.1:{advertised}" for _, _, advertised in slot)
        tokens = dict(p.strip().split(":", 1) for p in os.environ["SERVICE_TOKENS"].split(","))
        threshold_text = ",".join(f"{t}s" for t in thresholds)
        common = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_TOPIC": topic,
            "KEYWARD_PGBOUNCER": "0",
            "EXPIRY_NOTICE_THRESHOLDS": threshold_text,
        }
        plans: list[tuple[str, int, dict[str, str]]] = []
        for i in (1, 2):
            plans.append(
                (
                    "keys",
                    i,
                    {
                        "KEY_LIFETIME": f"{key_lifetime}s",
                        "EXPIRY_WATCH_INTERVAL": "1s",
                        "USAGE_FLUSH_INTERVAL": "1s",
                        "DB_POOL_SIZE": "8",
                    },
                )
            )
        for service, i, extra in plans:
            port = await toxiproxy.proxy(f"pg-{service}-{i}", upstream)
            replicas[f"{service}-{i}"] = Replica(
                service,
                i,
                {
                    **common,
                    **extra,
                    "DATABASE_URL": _via(database_url, port),
                    "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap[f"{service}-{i}"],
                },
                logs,
            )
        for replica in replicas.values():
            await replica.start()
        for i in (1, 2):
            keys_url = replicas[f"keys-{i}"].url
            ports = {"notifier": free_port(), "reaper": free_port(), "gateway": free_port()}
            others: dict[str, dict[str, str]] = {
                "notifier": {
                    "KEYS_URL": keys_url,
                    "SMTP_HOST": "127.0.0.1",
                    "SMTP_PORT": str(smtp.port),
                    "CONSOLE_URL": f"http://127.0.0.1:{ports['gateway']}",
                    "NOTIFIER_CONSUMER_GROUP": f"notifier-{topic}",
                    "SENDER_POLL_INTERVAL": "1s",
                    "NOTICE_RETRY_INITIAL": "1s",
                    "NOTICE_RETRY_MAX": "5s",
                    "NOTICE_CLAIM_TIMEOUT": "25s",
                    "NOTICE_LEASE": "10s",
                    # Every administrator here gets every notice of the tenant, a few a second: the notices of a
                    # watch pass (or of a backlog a fault held up) go out as digests, the others one by one, and the
                    # checker counts both by the notices their headers name.
                    "NOTICE_DIGEST_MIN": str(digest_min),
                    "NOTICE_DIGEST_WINDOW": f"{digest_window}s",
                    "SMTP_TIMEOUT": "5s",
                    "KEYS_TIMEOUT": "5s",
                },
                "reaper": {
                    "KEYS_URL": keys_url,
                    "REAPER_INTERVAL": f"{reaper_interval}s",
                    "REAPER_SPREAD": "0s",
                    "REAPER_CONSUMER_GROUP": f"reaper-{topic}",
                    "KEYS_TIMEOUT": "10s",
                },
                "gateway": {
                    "KEYS_URL": keys_url,
                    "NOTIFIER_URL": f"http://127.0.0.1:{ports['notifier']}",
                    "AUTH_MODE": "dev",
                    "AUTH_JWT_SECRET": JWT_SECRET,
                    "AUTH_ISSUER": ISSUER,
                    "AUTH_AUDIENCE": AUDIENCE,
                    "SESSION_SECRET": "chaos-gateway-session-secret-0123456789abcdef",
                    "KEYWARD_ENV": "dev",
                },
            }
            for service, extra in others.items():
                proxy_port = await toxiproxy.proxy(f"pg-{service}-{i}", upstream)
                env = {
                    **common,
                    **extra,
                    "DATABASE_URL": _via(database_url, proxy_port),
                    "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap[f"{service}-{i}"],
                }
                replica = Replica(service, i, env, logs, port=ports[service])
                replicas[replica.name] = replica
        for replica in replicas.values():
            if replica.service != "keys":
                await replica.start()
        yield Stack(
            database_url=database_url,
            topic=topic,
            bootstrap=bootstrap,
            replicas=replicas,
            sink=smtp.handler,
            toxiproxy=toxiproxy,
            organization_id=organization_id,
            key_lifetime=key_lifetime,
            thresholds=thresholds,
            reaper_interval=reaper_interval,
            voice_token=tokens[VOICE_TOKEN_NAME],
            logs=logs,
        )
    finally:
        for replica in replicas.values():
            await replica.stop()
        await toxiproxy.stop()
        smtp.stop()
        await admin_execute(owner_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
