"""The bench's own database, topic and processes on the local stack; nothing shared is touched."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.settings import ROOT
from deploy.local import kafka_access, runenv
from shared.migrate import scratch_database

# `--env NAME=VALUE`: added to every service process's environment, to measure a setting or a fix.
EXTRA_ENV: dict[str, str] = {}
# Processes whose log shows the broker refusing connections: someone restarted Kafka during the run.
KAFKA_OUTAGES: list[str] = []
KAFKA_DOWN = "Unable connect to node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """CREATE DATABASE kw_bench_<random>, every service's migrations, DROP at the end."""
    async with scratch_database(os.environ["DATABASE_URL"], "kw_bench") as url:
        yield url


TOPICS: list[str] = []
# Each process's output, kept for a look after the run; emptied when the next run starts.
LOGS = Path(tempfile.gettempdir()) / "keyward-bench-logs"


async def fresh_topic() -> str:
    """A topic of this run (3 partitions, as the tests use, and as GroupProgress expects); all of them are
    deleted at the end."""
    name = f"apikeys.lifecycle.bench-{uuid4().hex[:10]}"
    await kafka_access.create_topics({name: 3})
    TOPICS.append(name)
    return name


class GroupProgress:
    """Whether consumer groups have committed every message of a topic: a consumer still catching up is load."""

    def __init__(self, topic: str, partitions: int = 3) -> None:
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self._admin = AIOKafkaAdminClient(**kafka_access.access().options())
        self._offsets = AIOKafkaConsumer(**kafka_access.access().options())

    async def __aenter__(self) -> "GroupProgress":
        await self._admin.start()
        await self._offsets.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._offsets.stop()
        await self._admin.close()

    async def behind(self, *groups: str) -> dict[str, int]:
        """Messages each group has yet to commit, for the groups that have any."""
        ends = await self._offsets.end_offsets(self.partitions)
        lag = {}
        for group in groups:
            committed = await self._admin.list_consumer_group_offsets(group, partitions=self.partitions)
            # A partition the group never committed on reads -1 (or is absent): nothing consumed there.
            left = sum(ends[tp] - max(0, committed[tp].offset if tp in committed else 0) for tp in self.partitions)
            if left > 0:
                lag[group] = left
        return lag


class Process:
    """`python -m <module> serve` (or any argv) on a free port, logging to a file; answers /healthz when up."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], port: int | None = None, *, http: bool = True
    ) -> None:
        self.name = name
        # Ready when /healthz answers 200, or (not http) when the port accepts a connection.
        self.http = http
        self.port = port or free_port()
        self.argv = argv
        whole = {**os.environ, **env, "PORT": str(self.port), "LOG_FORMAT": "text"}
        # As `make run` does: a service's process gets its own secrets and database login only.
        self.env = runenv.service_environment(name, whole) if name in runenv.SERVICES else whole
        self.process: subprocess.Popen[bytes] | None = None
        LOGS.mkdir(exist_ok=True)
        self.log_path = LOGS / f"{name}-{self.port}.log"

    @classmethod
    def service(cls, name: str, env: dict[str, str]) -> "Process":
        return cls(name, ["-m", f"services.{name}", "serve"], {**env, **EXTRA_ENV})

    @classmethod
    def keys_relay(cls, env: dict[str, str]) -> "Process":
        """`python -m services.keys relay`: the outbox relay as production runs it, apart from the API."""
        process = cls("keys-relay", ["-m", "services.keys", "relay"], {**env, **EXTRA_ENV})
        process.env["RELAY_PORT"] = str(process.port)
        return process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout: float = 60.0, poll: float = 0.1) -> "Process":
        with self.log_path.open("wb") as log:
            # Popen, not asyncio's: kill()/poll() must work outside the loop too, and starting is instant.
            self.process = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, *self.argv], cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient() as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.log_tail()}")
                try:
                    if not self.http:
                        _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                        writer.close()
                        return self
                    if (await client.get(f"{self.url}/healthz", timeout=1)).status_code == 200:
                        return self
                except (httpx.HTTPError, OSError):
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"{self.name} did not answer /healthz: {self.log_tail()}")
                await asyncio.sleep(poll)

    async def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if KAFKA_DOWN in self.log_tail(100_000):
            KAFKA_OUTAGES.append(self.name)
        self.process.send_signal(signal.SIGTERM)
        for _ in range(int(timeout * 10)):
            if self.process.poll() is not None:
                return
            await asyncio.sleep(0.1)
        self.process.kill()
        self.process.wait(5)

    def status(self, field: str) -> int:
        """A /proc/<pid>/status figure in kB, e.g. VmHWM (peak resident memory)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise LookupError(field)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@asynccontextmanager
async def running(process: Process) -> AsyncIterator[Process]:
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


async def delete_topics() -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka_access.access().options())
    await admin.start()
    try:
        await admin.delete_topics(TOPICS)
    finally:
        await admin.close()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (those that have exited count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """Every PostgreSQL process on this machine (the stack's server and its backends)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def kafka_pids() -> list[int]:
    """The local Kafka broker's JVM."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"kafka.Kafka" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def machine_busy_seconds() -> float:
    """CPU time every core of the machine has spent not idle (nor waiting on I/O) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by named groups of processes between start() and stop(), as % of one core; `machine` is the
    whole machine's (every process, the load generator included), against 100 % per core."""

    def __init__(self, **groups: list[int]) -> None:
        self.groups = groups
        self.started: dict[str, float] = {}
        self.started_machine = 0.0
        self.wall = 0.0

    def start(self) -> "CpuMeter":
        self.groups.setdefault("postgres", postgres_pids())
        self.groups.setdefault("kafka", kafka_pids())
        self.started = {name: cpu_seconds(pids) for name, pids in self.groups.items()}
        self.started_machine = machine_busy_seconds()
        self.wall = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        used = {name: cpu_seconds(pids) - self.started[name] for name, pids in self.groups.items()}
        used["machine"] = machine_busy_seconds() - self.started_machine
        return {f"{name}_cpu_pct": round(100 * seconds / wall, 1) for name, seconds in used.items()}
