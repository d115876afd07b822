"""The faults of a chaos run, on a schedule drawn from a seed (printed at the start: the same seed, the same run).

kill-replica      SIGKILL of a random service replica, restarted after a pause
kill-leader       SIGKILL of the broker leading most of the topic's partitions, restarted after a pause
postgres-restart  the run's own PostgreSQL stopped fast (deploy/local/postgres.sh) and started again
smtp-4xx          the SMTP sink answers 451 for 30 s
proxy-latency     toxiproxy slows down a path for a while: a replica's connection to PostgreSQL, a replica's
                  connections to the three brokers, or every replica's connections to one broker
proxy-cut         toxiproxy cuts such a path for a while

Faults overlap: with the probability `overlap`, a fault begins while the one before is still in progress (after a
seeded share of its pause) instead of after its recovery, unless the two together would make a guarantee
impossible by design or touch one resource twice (`compatible`): two brokers of three down (min.insync.replicas=2:
nothing commits), both replicas of a service killed, one proxy under two toxics, two PostgreSQL restarts or SMTP
outages. At most two faults are in progress at once.
"""

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from chaos.stack import CLUSTER_SH, PG_ENV, POSTGRES_SH, REPLICAS, Stack, sh

log = logging.getLogger("chaos.faults")

KINDS = ("kill-replica", "kill-leader", "postgres-restart", "smtp-4xx", "proxy-latency", "proxy-cut")


@dataclass
class Fault:
    at: float  # seconds after the workload's start
    kind: str
    target: str = ""
    pause: float = 0.0
    path: str = ""  # a proxy fault's: "postgresql" or "kafka"
    overlaps: int | None = None  # the index of the fault in progress when this one begins
    offset: float = 0.0  # seconds after that fault's beginning
    started: float = 0.0  # wall clock
    ended: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        target = f"{self.target}/{self.path}" if self.path else self.target
        text = f"t+{self.at:5.0f}s {self.kind:17} {target:20} pause {self.pause:.0f}s"
        if self.overlaps is not None:
            text += f"  (overlaps #{self.overlaps + 1}, {self.offset:.0f}s into it)"
        return text

    def proxies(self) -> list[str]:
        """The toxiproxy proxies a proxy fault acts on (chaos/stack.py names them)."""
        if self.path == "postgresql":
            return [f"pg-{self.target}"]
        if self.path == "kafka" and self.target.startswith("broker-"):
            return [f"kafka-{r}-{self.target.removeprefix('broker-')}" for r in REPLICAS]
        if self.path == "kafka":
            return [f"kafka-{self.target}-{n}" for n in (1, 2, 3)]
        return []


def compatible(a: Fault, b: Fault) -> bool:
    """Whether b may begin while a is in progress."""
    if a.kind == b.kind and a.kind in ("kill-leader", "postgres-restart", "smtp-4xx"):
        return False  # two brokers of three down: no partition has two in-sync replicas; one resource twice
    if a.target and a.target == b.target:
        return False
    if a.kind == b.kind == "kill-replica" and a.target.rsplit("-", 1)[0] == b.target.rsplit("-", 1)[0]:
        return False  # both replicas of a service: not a partial failure any more
    return not set(a.proxies()) & set(b.proxies())


def outage(faults: list[Fault], i: int) -> float:
    """How long fault i and any fault overlapping it are in progress, from its beginning (by their pauses)."""
    span = faults[i].pause
    for f in faults:
        if f.overlaps == i:
            span = max(span, f.offset + f.pause)
    return span


def schedule(
    rng: random.Random,
    kinds: list[str],
    *,
    start: float,
    end: float,
    every: float | None,
    replicas: list[str],
    overlap: float = 0.0,
) -> list[Fault]:
    """One fault of each kind in `kinds`, spread over [start, end) in a random order (every=None), or a fault
    every `every` seconds (jittered), each of a kind drawn at random; each (but the first) overlapping the one
    before with the probability `overlap` where the two are compatible."""
    faults: list[Fault] = []
    if every is None:
        order = rng.sample(kinds, len(kinds))
        gap = (end - start) / len(order)
        times = [start + i * gap for i in range(len(order))]
    else:
        times, t = [], start
        while t < end:
            times.append(t)
            t += every * rng.uniform(0.7, 1.3)
        order = [rng.choice(kinds) for _ in times]
    for at, kind in zip(times, order, strict=True):
        fault = Fault(round(at, 1), kind)
        if kind == "kill-replica":
            fault.target, fault.pause = rng.choice(replicas), rng.uniform(2, 10)
        elif kind == "kill-leader":
            fault.pause = rng.uniform(5, 15)
        elif kind == "postgres-restart":
            fault.pause = rng.uniform(1, 3)
        elif kind == "smtp-4xx":
            fault.pause = 30
        elif kind in ("proxy-latency", "proxy-cut"):
            # A replica's PostgreSQL, a replica's Kafka (its three brokers), or every replica's path to one broker.
            fault.path = rng.choice(["postgresql", "kafka", "kafka"])
            broker = fault.path == "kafka" and rng.random() < 0.5
            fault.target = f"broker-{rng.randint(1, 3)}" if broker else rng.choice(replicas)
            if kind == "proxy-latency":
                fault.pause = rng.uniform(10, 20)
                fault.details["latency_ms"] = rng.choice([200, 500, 1000])
            else:
                fault.pause = rng.uniform(5, 15)
        faults.append(fault)
    for i in range(1, len(faults)):
        draw = rng.random()
        before = faults[i - 1]
        if before.overlaps is None and draw < overlap and compatible(before, faults[i]):
            faults[i].overlaps = i - 1
            faults[i].offset = round(rng.uniform(0.2, 0.8) * before.pause, 1)
            faults[i].at = round(before.at + faults[i].offset, 1)
    return faults


async def leader_broker(stack: Stack) -> tuple[int, dict[int, int]]:
    """The broker leading most of the topic's partitions, and how many each leads."""
    admin = AIOKafkaAdminClient(**stack.admin_kafka().options())
    await admin.start()
    try:
        described = await admin.describe_topics([stack.topic])
    finally:
        await admin.close()
    leaders = Counter(p["leader"] for p in described[0]["partitions"] if p["leader"] >= 0)
    return leaders.most_common(1)[0][0], dict(leaders)


async def apply(stack: Stack, fault: Fault) -> None:
    fault.started = time.time()
    try:
        await _apply(stack, fault)
    except Exception as exc:  # a fault that could not be applied is reported, not fatal to the run
        log.exception("fault %s failed", fault.kind)
        fault.details["error"] = f"{type(exc).__name__}: {exc}"
    fault.ended = time.time()
    log.info("fault done: %s (%.1fs)", fault.describe(), fault.ended - fault.started)


async def _apply(stack: Stack, fault: Fault) -> None:
    if fault.kind == "kill-replica":
        replica = stack.replicas[fault.target]
        replica.kill()
        await asyncio.sleep(fault.pause)
        await replica.start(timeout=120)
    elif fault.kind == "kill-leader":
        node, leaders = await leader_broker(stack)
        fault.target, fault.details["leaders_before"] = f"broker-{node}", leaders
        await sh("bash", str(CLUSTER_SH), "kill-node", str(node))
        await asyncio.sleep(fault.pause)
        await sh("bash", str(CLUSTER_SH), "start-node", str(node))
    elif fault.kind == "postgres-restart":
        fault.target = "postgresql"  # the run's own (PG_ENV), never the main stack's
        await sh("bash", str(POSTGRES_SH), "stop", env=PG_ENV)
        await asyncio.sleep(fault.pause)
        await sh("bash", str(POSTGRES_SH), "start", env=PG_ENV)
    elif fault.kind == "smtp-4xx":
        fault.target = "smtp-sink"
        stack.sink.refusing = True
        try:
            await asyncio.sleep(fault.pause)
        finally:
            stack.sink.refusing = False
    elif fault.kind in ("proxy-latency", "proxy-cut"):
        proxies = fault.proxies()
        try:
            if fault.kind == "proxy-latency":
                await stack.toxiproxy.latency(proxies, fault.details["latency_ms"])
            else:
                await stack.toxiproxy.cut(proxies)
            await asyncio.sleep(fault.pause)
        finally:
            await stack.toxiproxy.heal(proxies)
    else:
        raise ValueError(f"unknown fault {fault.kind!r}")


async def run_schedule(stack: Stack, faults: list[Fault], t0: float, gap: float) -> None:
    """Applies the faults at their times. A fault that overlaps the one before begins `offset` seconds after that
    one began, while it is in progress; any other begins at least `gap` seconds after every fault before it has
    ended (recovered), so that it is met by a system that has recovered from the last."""
    running: list[asyncio.Task[None]] = []
    began: dict[int, float] = {}
    ready = t0
    for i, fault in enumerate(faults):
        if fault.overlaps is not None and fault.overlaps in began:
            await asyncio.sleep(max(0.0, began[fault.overlaps] + fault.offset - time.monotonic()))
        else:
            if running:
                await asyncio.gather(*running)
                running.clear()
                ready = time.monotonic() + gap
            await asyncio.sleep(max(0.0, t0 + fault.at - time.monotonic(), ready - time.monotonic()))
        began[i] = time.monotonic()
        fault.details["started_at_s"] = round(began[i] - t0, 1)
        log.info("fault #%d: %s", i + 1, fault.describe())
        running.append(asyncio.create_task(apply(stack, fault)))
    await asyncio.gather(*running)
