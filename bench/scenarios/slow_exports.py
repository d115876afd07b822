"""Scenario 7: verify beside slow exports (issue 18).

Twenty administrators each start an export of the whole table (`list_keys` keys: far more than the sockets
between them and the service hold) and read it at 1 KB/s (`bench.slowread`, one process), while the key list is
called 50 times a second and `bench.pacer` verifies at a steady rate, open-loop. Verify's p99 beside them is
compared with its p99 idle, measured just before in the same run. The keys service runs with its defaults:
the exports beyond EXPORTS_PER_REPLICA are refused (429), the others hold connections of the administrators'
pool, and verify has its own.
"""

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from bench import pacer
from bench.profile import profiled
from bench.report import Check, Result
from bench.stack import LOGS, CpuMeter, Process, running
from bench.world import Bench

VERIFY_RATE = 200  # verifications a second, open loop: latency, not throughput
LIST_RATE = 50
READ_RATE = 1024  # each download's pace, bytes a second
# The first seconds, while the exports fill their sockets' buffers as fast as the service makes rows.
FILLING_SECONDS = 3.0
# The pacer's own start (its connections being opened) is not the service's latency: left out of both windows.
WARMUP_SECONDS = 1.0
EXPORTER = "bench-exporter-{:02d}"
ADMIN_NICE = 10
# name: (verify in a process of its own, the administrators' process's nice)
LAYOUTS = {"one_process": (False, 0), "apart": (True, 0), "apart_admin_niced": (True, ADMIN_NICE)}


async def _exporters(b: Bench, count: int) -> list[str]:
    """System-level customer administrators, one per download: the replica's limit applies, not one person's."""
    names = [EXPORTER.format(n) for n in range(count)]
    conn = await b.connect()
    try:
        await conn.executemany(
            """
            INSERT INTO keys.administrators (id, username, email, display_name, level, role, organization_id)
            VALUES ($1, $2, $3, 'Bench Exporter', 'system', 'customer_administrator', $4)
            ON CONFLICT (username) DO NOTHING
            """,
            [(uuid4(), name, f"{name}@example.com", b.orgs[0].id) for name in names],
        )
    finally:
        await conn.close()
    return names


def _p99(samples: Path, start: float, end: float = float("inf")) -> float | None:
    values = sorted(
        float(ms)
        for due, ms, *_ in (line.split() for line in samples.read_text().splitlines())
        if start <= float(due) < end
    )
    return round(values[max(0, int(len(values) * 0.99) - 1)], 2) if values else None


@dataclass
class Measured:
    idle: dict[str, Any]
    during: dict[str, Any]
    listed: dict[str, Any]
    read: dict[str, Any]
    cpu: dict[str, float]
    idle_p99: float
    during_p99: float
    phases: dict[str, float | None]

    @property
    def ratio(self) -> float:
        return self.during_p99 / self.idle_p99

    @property
    def errors(self) -> int:
        return (self.during["sent"] - self.during["ok"]) + (self.idle["sent"] - self.idle["ok"])

    def summary(self) -> dict[str, Any]:
        return {
            "ratio": round(self.ratio, 2),
            "verify_p99_ms": self.during_p99,
            "verify_idle_p99_ms": self.idle_p99,
            "verify_p99_ms_by_phase": self.phases,
            "errors": self.errors,
            "list_p99_ms": self.listed["p99_ms"],
            "cpu": self.cpu,
        }


@contextlib.asynccontextmanager
async def _layout(b: Bench, apart: bool, admin_nice: int = 0) -> AsyncIterator[tuple[Process, Process]]:
    """(verify's process, the administrators' process): one process serving both, or each its own (SERVES)."""
    if not apart:
        async with running(b.keys_process()) as keys:
            yield keys, keys
        return
    async with running(b.keys_process(SERVES="admin")) as admin, running(b.keys_process(SERVES="verify")) as verify:
        if admin_nice:
            os.setpriority(os.PRIO_PROCESS, admin.pid, admin_nice)
        yield verify, admin


async def _measure(b: Bench, admins: list[str], keys_file: Path, name: str) -> Measured:
    seconds = b.sizes.slow_export_seconds
    apart, admin_nice = LAYOUTS[name]
    samples = LOGS / f"slow-exports-{name}-verify-samples.txt"
    idle_samples = LOGS / f"slow-exports-{name}-verify-idle-samples.txt"
    for path in (samples, idle_samples):  # a layout measured twice keeps its first run's too
        if path.exists():
            path.rename(path.with_suffix(".first.txt"))
    reading = WARMUP_SECONDS + FILLING_SECONDS + seconds
    async with _layout(b, apart, admin_nice) as (verifier, keys):
        idle_from = time.time() + WARMUP_SECONDS
        idle = await pacer.finish(
            await pacer.spawn(
                "verify", verifier.url, VERIFY_RATE, WARMUP_SECONDS + seconds, str(keys_file), samples=str(idle_samples)
            )
        )
        verifying = await pacer.spawn(
            "verify",
            verifier.url,
            VERIFY_RATE,
            WARMUP_SECONDS + FILLING_SECONDS + seconds,
            str(keys_file),
            samples=str(samples),
        )
        listing = await pacer.spawn("list", keys.url, LIST_RATE, reading)
        # The downloads begin once the pacers are past their start, and the readers' process too.
        epoch_started = time.time() + WARMUP_SECONDS
        readers = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.slowread",
            keys.url,
            "/v1/keys/export.csv",
            str(READ_RATE),
            str(reading - WARMUP_SECONDS),
            str(epoch_started),
            *admins,
            stdout=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(max(0.0, epoch_started - time.time()))
        cpu = CpuMeter(keys=[keys.pid], verify=[verifier.pid]).start()
        async with profiled(verifier.pid, f"slow-exports-{name}-verify"):
            during = await pacer.finish(verifying)
            listed = await pacer.finish(listing)
        cpu_use = cpu.stop()
        read = await pacer.finish(readers)
    idle_p99, during_p99 = _p99(idle_samples, idle_from), _p99(samples, epoch_started)
    assert idle_p99 is not None and during_p99 is not None
    phases = {
        "filling": _p99(samples, epoch_started, epoch_started + FILLING_SECONDS),
        "steady": _p99(samples, epoch_started + FILLING_SECONDS),
    }
    return Measured(idle, during, listed, read, cpu_use, idle_p99, during_p99, phases)


async def run(b: Bench) -> list[Result]:
    """Three layouts in the same run, one after the other (in full mode then again in the reverse order, so that
    neither end of the run favours one): verify in the administrators' process (SERVES=all, as development runs
    it); in a process of its own (SERVES=verify beside SERVES=admin, as deploy/k8s does); the same with the
    administrators' process at a lower CPU priority (nice), as pods with CPU requests of their own are weighed by
    the kernel. The scenario's figure is the second's (its worse run); the others are its comparisons."""
    seconds = b.sizes.slow_export_seconds
    keys_file = b.workdir / "verify-keys.txt"
    keys_file.write_text("\n".join(b.verify_keys) + "\n")
    admins = await _exporters(b, b.sizes.slow_exports)
    LOGS.mkdir(exist_ok=True)
    order = list(LAYOUTS) + (list(reversed(LAYOUTS)) if b.sizes.mode == "full" else [])
    runs: dict[str, list[Measured]] = {name: [] for name in LAYOUTS}
    for name in order:
        runs[name].append(await _measure(b, admins, keys_file, name))
    worst = {name: max(measured, key=lambda m: m.ratio) for name, measured in runs.items()}
    m, shared_loop, niced = worst["apart"], worst["one_process"], worst["apart_admin_niced"]
    idle, during, listed, idle_p99, during_p99, ratio = m.idle, m.during, m.listed, m.idle_p99, m.during_p99, m.ratio
    statuses: dict[str, int] = m.read["statuses"]
    errors = m.errors
    figures: dict[str, Any] = {
        "table_keys": b.loaded,
        "downloads": len(admins),
        "download_statuses": statuses,
        "verify_p99_ms": during_p99,
        "verify_during": during,
        "verify_p99_ms_by_phase": m.phases,
        "list_during": listed,
        "cpu": m.cpu,
        "layout_order": order,
        "ratios_by_layout": {name: [round(x.ratio, 2) for x in measured] for name, measured in runs.items()},
        "one_process": shared_loop.summary(),
        "apart_admin_niced": {"nice": ADMIN_NICE, **niced.summary()},
    }
    return [
        Result(
            7,
            "verify beside slow exports",
            figures=figures,
            baseline={"verify_p99_ms": idle_p99, "verify_idle": idle},
            ratio=ratio,
            checks=[Check("verify_p99_vs_idle", ratio, "<=", 1.5), Check("verify_errors", errors, "<=", 0)],
            headline=f"verify p99 {during_p99:.1f} ms, {errors} errors; exports {statuses}",
            base_headline=f"verify p99 {idle_p99:.1f} ms idle",
            notes=[
                f"{len(admins)} administrators each download the whole table ({b.loaded:,} keys) at {READ_RATE} B/s, "
                f"the list at {LIST_RATE}/s, verify open-loop at {VERIFY_RATE}/s; "
                f"p99 over {seconds + FILLING_SECONDS:g} s "
                f"from the downloads' start (the first {FILLING_SECONDS:g} s: the exports filling their sockets), idle "
                f"over {seconds:g} s just before; each pacer's first {WARMUP_SECONDS:g} s (its start) left out",
                f"the list meanwhile: {listed['statuses']}, p99 {listed['p99_ms']} ms",
                "verify on a process of its own (SERVES=verify) beside the administrators' (SERVES=admin); the same "
                f"run with one process serving both (SERVES=all): p99 {shared_loop.during_p99} ms against "
                f"{shared_loop.idle_p99} idle, {shared_loop.ratio:.2f}x, {shared_loop.errors} errors; apart with the "
                f"administrators' process at nice {ADMIN_NICE}: {niced.during_p99} ms against {niced.idle_p99}, "
                f"{niced.ratio:.2f}x",
            ],
        )
    ]
