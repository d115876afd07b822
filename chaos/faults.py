"""The faults of a chaos run, on a schedule drawn from a seed (printed at the start: the same seed, the same run).

kill-replica      SIGKILL of a random service replica, restarted after a pause
kill-leader       SIGKILL of the broker leading most of the topic's partitions, restarted after a pause
postgres-restart  PostgreSQL stopped fast (deploy/local/postgres.sh) and started again
smtp-4xx          the SMTP sink answers 451 for 30 s
proxy-latency     a replica's connection to PostgreSQL (toxiproxy) slowed down for a while
proxy-cut         a replica's connection to PostgreSQL (toxiproxy) cut for a while
"""

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from chaos.stack import CLUSTER_SH, POSTGRES_SH, Stack, sh

log = logging.getLogger("chaos.faults")

KINDS = ("kill-replica", "kill-leader", "postgres-restart", "smtp-4xx", "proxy-latency", "proxy-cut")


@dataclass
class Fault:
    at: float  # seconds after the workload's start
    kind: str
    target: str = ""
    pause: float = 0.0
    started: float = 0.0  # wall clock
    ended: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"t+{self.at:5.0f}s {self.kind:17} {self.target:12} pause {self.pause:.0f}s"


def schedule(
    rng: random.Random, kinds: list[str], *, start: float, end: float, every: float | None, replicas: list[str]
) -> list[Fault]:
    """One fault of each kind in `kinds`, spread over [start, end) in a random order (every=None), or a fault
    every `every` seconds (jittered), each of a kind drawn at random."""
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
        elif kind == "proxy-latency":
            fault.target, fault.pause = rng.choice(replicas), rng.uniform(10, 20)
            fault.details["latency_ms"] = rng.choice([200, 500, 1000])
        elif kind == "proxy-cut":
            fault.target, fault.pause = rng.choice(replicas), rng.uniform(5, 15)
        faults.append(fault)
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
        fault.target = "postgresql"
        await sh("bash", str(POSTGRES_SH), "stop")
        await asyncio.sleep(fault.pause)
        await sh("bash", str(POSTGRES_SH), "start")
    elif fault.kind == "smtp-4xx":
        fault.target = "smtp-sink"
        stack.sink.refusing = True
        try:
            await asyncio.sleep(fault.pause)
        finally:
            stack.sink.refusing = False
    elif fault.kind in ("proxy-latency", "proxy-cut"):
        proxy = f"pg-{fault.target}"
        if fault.kind == "proxy-latency":
            await stack.toxiproxy.latency(proxy, fault.details["latency_ms"])
        else:
            await stack.toxiproxy.cut(proxy)
        try:
            await asyncio.sleep(fault.pause)
        finally:
            await stack.toxiproxy.heal(proxy)
    else:
        raise ValueError(f"unknown fault {fault.kind!r}")


async def run_schedule(stack: Stack, faults: list[Fault], t0: float, gap: float) -> None:
    """Applies the faults one after the other at their times, each at least `gap` seconds after the one before
    has ended (recovered): a fault is met by a system that has recovered from the last. Two faults back to back
    add up to one outage as long as both (see docs/reliability.md)."""
    ready = t0
    for fault in faults:
        await asyncio.sleep(max(0.0, t0 + fault.at - time.monotonic(), ready - time.monotonic()))
        fault.details["started_at_s"] = round(time.monotonic() - t0, 1)
        log.info("fault: %s", fault.describe())
        await apply(stack, fault)
        ready = time.monotonic() + gap
