"""Scenario 4: the outbox relay against a bare aiokafka producer, and create-to-Kafka latency at 200/s.

Throughput: keys and their `created` outbox rows are COPYed while no keys process runs (the relay held
off); the bare producer (idempotent, acks=all, as the relay's) sends the same messages to the same topic;
then a keys process starts and the time from its first /healthz answer to the last row's `sent_at` counts.
Latency: `bench.pacer` creates keys through the API at a steady rate in its own process while this one
consumes the topic: receive time minus the event's `created_at`.
"""

import asyncio
import json
import statistics
import sys
import time
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer

from bench import data
from bench.profile import profiled
from bench.report import Check, Result
from bench.stack import running
from bench.world import Bench
from deploy.local import kafka_access
from services.keys import events
from services.keys.repository import KEY_COLUMNS
from shared.events import encode
from shared.kafka import idempotent_producer

Message = tuple[bytes, bytes, list[tuple[str, bytes]]]


async def _fill_outbox(b: Bench, conn: asyncpg.Connection, count: int) -> list[Message]:
    prefix = f"relay{b.loaded}-"
    await data.load_keys(b.dsn, b.orgs, count, first=b.loaded, prefix=prefix)
    b.loaded += count
    rows = await conn.fetch(f"SELECT {KEY_COLUMNS} FROM keys.api_keys WHERE name LIKE $1", prefix + "%")
    messages = [encode(events.created(r)) for r in rows]
    await conn.copy_records_to_table(
        "outbox",
        schema_name="keys",
        columns=["topic", "message_key", "headers", "payload"],
        records=[(b.topic, k, json.dumps([[n, v.decode()] for n, v in h]), p) for k, p, h in messages],
    )
    return messages


async def _bare(topic: str, messages: list[Message]) -> float:
    producer = idempotent_producer(kafka_access.access(), "bench-bare-producer")
    await producer.start()
    try:
        started = time.perf_counter()
        deliveries = [await producer.send(topic, value=p, key=k, headers=h) for k, p, h in messages]
        await asyncio.gather(*deliveries)
        return len(messages) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def _drain(conn: asyncpg.Connection, started: float, timeout: float = 600) -> float:
    """Seconds from `started` (epoch) to the last outbox row's sent_at, once none is left unsent."""
    deadline = time.monotonic() + timeout
    while await conn.fetchval("SELECT count(*) FROM keys.outbox WHERE sent_at IS NULL"):
        if time.monotonic() > deadline:
            raise TimeoutError("the relay did not empty the outbox")
        await asyncio.sleep(0.05)
    return float(await conn.fetchval("SELECT extract(epoch FROM max(sent_at)) FROM keys.outbox")) - started


async def _consume(consumer: AIOKafkaConsumer, latencies: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=100)
        now = time.time()
        for messages in batches.values():
            for m in messages:
                created = datetime.fromisoformat(json.loads(m.value)["created_at"].replace("Z", "+00:00"))
                latencies.append((now - created.timestamp()) * 1000)


async def _latency(b: Bench, keys_url: str) -> tuple[list[float], dict[str, object]]:
    consumer = AIOKafkaConsumer(b.topic, **kafka_access.access().options(), group_id=None, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        partitions = list(consumer.assignment())
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        latencies: list[float] = []
        stop = asyncio.Event()
        task = asyncio.create_task(_consume(consumer, latencies, stop))
        orgs = [str(o.id) for o in b.orgs if o.depth >= 1][:200]
        pacer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.pacer",
            "create",
            keys_url,
            str(b.sizes.relay_rate),
            str(b.sizes.relay_seconds),
            *orgs,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await pacer.communicate()
        summary = json.loads(out.decode().strip().splitlines()[-1])
        deadline = time.monotonic() + 30
        while len(latencies) < summary["created"] and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        stop.set()
        await task
        return latencies, summary
    finally:
        await consumer.stop()


async def run(b: Bench) -> list[Result]:
    conn = await b.connect()
    try:
        messages = await _fill_outbox(b, conn, b.sizes.relay_events)
        bare_rate = await _bare(b.topic, messages)
        api, relay = b.keys_api_and_relay()
        await relay.start(poll=0.01)
        try:
            async with profiled(relay.pid, "relay"):
                seconds = await _drain(conn, time.time())
            relay_rate = len(messages) / seconds
            async with running(api):
                latencies, paced = await _latency(b, api.url)
        finally:
            await relay.stop()
    finally:
        await conn.close()
    ratio = relay_rate / bare_rate
    throughput = Result(
        4,
        "relay throughput",
        figures={"events": len(messages), "seconds": round(seconds, 2), "events_per_second": round(relay_rate)},
        baseline={"events_per_second": round(bare_rate), "what": "bare idempotent acks=all aiokafka producer"},
        ratio=ratio,
        checks=[Check("ratio", ratio, ">=", 0.5)],
        notes=["`python -m services.keys relay` timed from its first /healthz answer to the last sent_at"],
        headline=f"{relay_rate:,.0f} events/s",
        base_headline=f"{bare_rate:,.0f} events/s",
    )
    latencies.sort()
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)] if latencies else float("inf")
    latency = Result(
        4,
        f"relay latency at {b.sizes.relay_rate}/s",
        figures={
            "received": len(latencies),
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(p99, 1),
            "max_ms": round(latencies[-1], 1) if latencies else None,
            "pacer": paced,
        },
        checks=[Check("p99_ms", p99, "<=", 250)],
        notes=["create-to-Kafka: consumer receive time minus the event's created_at; same clock"],
        headline=f"p99 {p99:,.0f} ms ({len(latencies):,} events)",
    )
    if paced["created"] != len(latencies):
        latency.notes.append(f"{paced['created']} keys created but {len(latencies)} events received")
    return [throughput, latency]
