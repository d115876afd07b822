"""Scenario 6: keys all expiring in the same second, gone within 60 s, and verify's p99 meanwhile.

The keys are COPYed to expire one second after an instant T a little ahead. The keys service runs as
deploy/k8s runs it: the administrators' and services' process (SERVES=admin, which the reaper calls), verify on
a process of its own (SERVES=verify) and the relay apart. It and the reaper (defaults: REAPER_INTERVAL 60 s,
REAPER_SPREAD 45 s, batches of 1000, 2 callers; quick mode spreads over 10 s) start after the load, so the
reaper's first pass learns T from expiry-status, as it would have from the keys' `created` events.
`bench.pacer` verifies keys at a steady rate in its own process: before T (idle), then from T until the keys
are gone, their `deleted` events relayed and consumed by the reaper and the notifier (which runs too, as in a
deployment); the two p99s are compared.
"""

import asyncio
import importlib.util
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg

from bench import data
from bench.profile import profiled
from bench.report import Check, Result
from bench.stack import LOGS, CpuMeter, GroupProgress, Process, free_port, fresh_topic, running
from bench.world import Bench

VERIFY_RATE = 200  # verifications a second, well under what the service serves: latency, not throughput
SMALLEST_THRESHOLD = 86400  # announced already: the watcher stays quiet, as for keys announced days ago


async def _pacer(url: str, keys_file: Path, seconds: float, samples: Path | None = None) -> asyncio.subprocess.Process:
    env = {**os.environ, "PACER_SAMPLES": str(samples)} if samples else None
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.pacer",
        "verify",
        url,
        str(VERIFY_RATE),
        str(seconds),
        str(keys_file),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )


async def _report(pacer: asyncio.subprocess.Process) -> dict[str, Any]:
    out, _ = await pacer.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


def _phases(samples: Path, first: float, gone: float, relayed: float, consumed: float) -> dict[str, float | None]:
    """Verify's p99 while keys are being deleted, while their events are relayed, while consumers catch up,
    then after."""
    bounds = {
        "deleting": (first, gone),
        "relaying": (gone, relayed),
        "consuming": (relayed, consumed),
        "after": (consumed, float("inf")),
    }
    rows = [tuple(map(float, line.split()[:2])) for line in samples.read_text().splitlines()]
    out: dict[str, float | None] = {}
    for name, (start, end) in bounds.items():
        values = sorted(ms for due, ms in rows if start <= due < end)
        out[name] = round(values[max(0, int(len(values) * 0.99) - 1)], 1) if values else None
    return out


async def _keep_timeline(conn: asyncpg.Connection, since: datetime) -> None:
    """When each batch's transaction started and when the relay marked events sent, beside the verify samples:
    a slow verify can then be lined up with what the reaping was doing at that moment."""
    for name, column, table in (("batches", "at", "audit_log"), ("relay-marks", "sent_at", "outbox")):
        rows = await conn.fetch(
            f"SELECT extract(epoch FROM {column})::float8 AS t, count(*) AS n FROM keys.{table} "
            f"WHERE {column} >= $1 GROUP BY {column} ORDER BY {column}",
            since,
        )
        (LOGS / f"reaper-{name}.txt").write_text("".join(f"{r['t']:.4f} {r['n']}\n" for r in rows))


async def run(b: Bench) -> list[Result]:
    if importlib.util.find_spec("services.reaper.__main__") is None:
        return [Result(6, "reaper", skipped="services/reaper is not there yet")]
    count, probe = b.sizes.reaper_keys, b.sizes.reaper_probe_seconds
    keys_file = b.workdir / "verify-keys.txt"
    keys_file.write_text("\n".join(b.verify_keys) + "\n")
    topic = await fresh_topic()
    # Ahead by the load (at least 2,500 keys/s with the indexes in place), two process starts and the idle probe.
    first = datetime.now(UTC) + timedelta(seconds=count / 2500 + probe + 8)
    window = (first, first + timedelta(seconds=1))
    await data.load_keys(
        b.dsn,
        [o for o in b.orgs if o.depth >= 1],
        count,
        first=b.loaded,
        prefix=f"reap{b.loaded}-",
        lifetime=365 * 86400,
        noticed=SMALLEST_THRESHOLD,
        expires_at=first,
    )
    b.loaded += count
    conn = await b.connect()
    try:
        await conn.execute("ANALYZE keys.api_keys")
        env = b.service_env(KAFKA_TOPIC=topic)
        api, relay = b.keys_api_and_relay(KAFKA_TOPIC=topic, SERVES="admin")
        verifier = b.keys_process(KAFKA_TOPIC=topic, SERVES="verify")
        async with running(relay), running(api) as keys, running(verifier) as verify:
            spread = {"REAPER_SPREAD": b.sizes.reaper_spread} if b.sizes.reaper_spread else {}
            reaper = Process.service(
                "reaper",
                {**env, **spread, "KEYS_URL": keys.url, "REAPER_CONSUMER_GROUP": f"reaper-bench-{uuid4().hex[:8]}"},
            )
            # The notifier consumes the `deleted` events too, as in a deployment (the keys were noticed long
            # ago: no e-mail goes out, and its SMTP server is a closed port).
            notifier = Process.service(
                "notifier",
                {
                    **env,
                    "KEYS_URL": keys.url,
                    "SMTP_HOST": "127.0.0.1",
                    "SMTP_PORT": str(free_port()),
                    "NOTIFIER_CONSUMER_GROUP": f"notifier-bench-{uuid4().hex[:8]}",
                },
            )
            groups = (reaper.env["REAPER_CONSUMER_GROUP"], notifier.env["NOTIFIER_CONSUMER_GROUP"])
            async with running(reaper), running(notifier), GroupProgress(topic) as progress:
                left = (first - datetime.now(UTC)).total_seconds()
                if left < 2:
                    raise RuntimeError(f"the load took too long: the keys expire {left:.1f} s from now")
                idle = await _report(await _pacer(verify.url, keys_file, min(probe, left - 1)))
                await asyncio.sleep(max(0.0, (first - datetime.now(UTC)).total_seconds()))
                # Kept with the logs: each verify's due time and latency, to line up with the services' logs.
                LOGS.mkdir(exist_ok=True)
                samples = LOGS / "reaper-verify-samples.txt"
                during_pacer = await _pacer(verify.url, keys_file, 300, samples)
                cpu = CpuMeter(
                    verify=[verify.pid],
                    keys=[keys.pid],
                    relay=[relay.pid],
                    reaper=[reaper.pid],
                    notifier=[notifier.pid],
                ).start()
                async with (
                    profiled(verify.pid, "reaper-verify"),
                    profiled(keys.pid, "reaper-keys"),
                    profiled(relay.pid, "reaper-relay"),
                    profiled(reaper.pid, "reaper-reaper"),
                    profiled(notifier.pid, "reaper-notifier"),
                ):
                    deadline = time.monotonic() + 300
                    # EXISTS, not count(*): counting a hundred thousand rows ten times a second was itself
                    # a tenth of a core of PostgreSQL, taken from the verify requests being measured.
                    while await conn.fetchval(
                        "SELECT EXISTS (SELECT 1 FROM keys.api_keys WHERE expires_at >= $1 AND expires_at <= $2)",
                        *window,
                    ):
                        if time.monotonic() > deadline:
                            raise TimeoutError("the expired keys were not all deleted in 300 s")
                        await asyncio.sleep(0.1)
                    gone = datetime.now(UTC)
                    # Polling the database: there is nothing to wait on.
                    while await conn.fetchval(  # noqa: ASYNC110
                        "SELECT EXISTS (SELECT 1 FROM keys.outbox WHERE sent_at IS NULL)"
                    ):
                        await asyncio.sleep(0.1)
                    relayed = datetime.now(UTC)
                    while lag := await progress.behind(*groups):
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"the consumers did not catch up in 300 s: {lag} left")
                        await asyncio.sleep(0.25)
                    consumed = datetime.now(UTC)
                    cpu_use = cpu.stop()
                await _keep_timeline(conn, first)
                await asyncio.sleep(1)  # a little of the aftermath too
                during_pacer.send_signal(signal.SIGINT)
                during = await _report(during_pacer)
    finally:
        await conn.close()
    seconds = (gone - first).total_seconds()
    phases = _phases(samples, first.timestamp(), gone.timestamp(), relayed.timestamp(), consumed.timestamp())
    ratio = during["p99_ms"] / idle["p99_ms"]
    return [
        Result(
            6,
            "reaper",
            figures={
                "keys": count,
                "gone_seconds_after_first_expiry": round(seconds, 2),
                "deleted_events_relayed_after": round((relayed - first).total_seconds(), 2),
                "consumed_by_reaper_and_notifier_after": round((consumed - first).total_seconds(), 2),
                "verify_during": during,
                "cpu_while_reaping": cpu_use,
                "verify_p99_ms_by_phase": phases,
            },
            baseline={"verify_idle": idle},
            ratio=ratio,
            checks=[Check("gone_seconds", seconds, "<=", 60), Check("verify_p99_vs_idle", ratio, "<=", 2)],
            headline=f"{count:,} gone in {seconds:.1f} s; verify p99 {during['p99_ms']:.0f} ms",
            base_headline=f"verify p99 {idle['p99_ms']:.1f} ms idle",
            notes=[
                f"verify at a steady {VERIFY_RATE}/s (open loop, latency from when each request was due) on a process "
                "serving verify only (SERVES=verify), the reaper's calls on the administrators' (SERVES=admin); "
                "'during' runs from the expiry until the deleted events are relayed and consumed by the reaper and "
                "the notifier, plus 1 s"
            ],
        )
    ]
