"""Scenario 7: verify beside slow exports (issue 18).

Twenty administrators each start an export of the whole table (`list_keys` keys: far more than the sockets
between them and the service hold) and read it at 1 KB/s (`curl --limit-rate 1k`), while the key list is
called 50 times a second and `bench.pacer` verifies at a steady rate, open-loop. Verify's p99 beside them is
compared with its p99 idle, measured just before in the same run. The keys service runs with its defaults:
the exports beyond EXPORTS_PER_REPLICA are refused (429), the others hold connections of the administrators'
pool, and verify has its own.
"""

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from bench import pacer
from bench.profile import profiled
from bench.report import Check, Result
from bench.stack import LOGS, CpuMeter, running
from bench.world import Bench

VERIFY_RATE = 200  # verifications a second, open loop: latency, not throughput
LIST_RATE = 50
READ_RATE = "1k"  # each download's pace
# The first seconds, while the exports fill their sockets' buffers as fast as the service makes rows.
FILLING_SECONDS = 3.0
# The pacer's own start (its connections being opened) is not the service's latency: left out of both windows.
WARMUP_SECONDS = 1.0
EXPORTER = "bench-exporter-{:02d}"


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


async def _download(b: Bench, url: str, admin: str, headers_file: Path) -> asyncio.subprocess.Process:
    from shared.auth import sign_acting_admin

    claim = sign_acting_admin(
        admin,
        secret=os.environ["ACTING_ADMIN_SECRET"],
        issuer="gateway",
        audience="keys",
        method="GET",
        path="/v1/keys/export.csv",
    )
    return await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--limit-rate",
        READ_RATE,
        "-D",
        str(headers_file),
        "-o",
        "/dev/null",
        "-H",
        f"Authorization: Bearer {b.tokens['gateway']}",
        "-H",
        f"X-Acting-Admin: {claim}",
        f"{url}/v1/keys/export.csv",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def _status(headers_file: Path) -> str:
    try:
        first = headers_file.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return "none"
    return first.split()[1] if len(first.split()) > 1 else "none"


def _p99(samples: Path, start: float, end: float = float("inf")) -> float | None:
    values = sorted(
        float(ms)
        for due, ms, *_ in (line.split() for line in samples.read_text().splitlines())
        if start <= float(due) < end
    )
    return round(values[max(0, int(len(values) * 0.99) - 1)], 2) if values else None


async def run(b: Bench) -> list[Result]:
    seconds = b.sizes.slow_export_seconds
    keys_file = b.workdir / "verify-keys.txt"
    keys_file.write_text("\n".join(b.verify_keys) + "\n")
    admins = await _exporters(b, b.sizes.slow_exports)
    LOGS.mkdir(exist_ok=True)
    samples, idle_samples = LOGS / "slow-exports-verify-samples.txt", LOGS / "slow-exports-verify-idle-samples.txt"
    downloads: list[asyncio.subprocess.Process] = []
    headers = [b.workdir / f"export-{n}.headers" for n in range(len(admins))]
    async with running(b.keys_process()) as keys:
        idle_from = time.time() + WARMUP_SECONDS
        idle = await pacer.finish(
            await pacer.spawn(
                "verify", keys.url, VERIFY_RATE, WARMUP_SECONDS + seconds, str(keys_file), samples=str(idle_samples)
            )
        )
        verifying = await pacer.spawn(
            "verify",
            keys.url,
            VERIFY_RATE,
            WARMUP_SECONDS + FILLING_SECONDS + seconds,
            str(keys_file),
            samples=str(samples),
        )
        listing = await pacer.spawn("list", keys.url, LIST_RATE, WARMUP_SECONDS + FILLING_SECONDS + seconds)
        await asyncio.sleep(WARMUP_SECONDS)
        cpu = CpuMeter(keys=[keys.pid]).start()
        try:
            async with profiled(keys.pid, "slow-exports"):
                epoch_started = time.time()
                downloads = [await _download(b, keys.url, a, h) for a, h in zip(admins, headers, strict=True)]
                during = await pacer.finish(verifying)
                listed = await pacer.finish(listing)
            cpu_use = cpu.stop()
        finally:
            for d in downloads:
                if d.returncode is None:
                    d.send_signal(signal.SIGTERM)
            await asyncio.gather(*(d.wait() for d in downloads))
    statuses: dict[str, int] = {}
    for h in headers:
        statuses[_status(h)] = statuses.get(_status(h), 0) + 1
    idle_p99, during_p99 = _p99(idle_samples, idle_from), _p99(samples, epoch_started)
    assert idle_p99 is not None and during_p99 is not None
    ratio = during_p99 / idle_p99
    errors = (during["sent"] - during["ok"]) + (idle["sent"] - idle["ok"])
    phases = {
        "filling": _p99(samples, epoch_started, epoch_started + FILLING_SECONDS),
        "steady": _p99(samples, epoch_started + FILLING_SECONDS),
    }
    figures: dict[str, Any] = {
        "table_keys": b.loaded,
        "downloads": len(admins),
        "download_statuses": statuses,
        "verify_p99_ms": during_p99,
        "verify_during": during,
        "verify_p99_ms_by_phase": phases,
        "list_during": listed,
        "cpu_keys": cpu_use,
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
                f"{len(admins)} administrators each download the whole table ({b.loaded:,} keys) at {READ_RATE}B/s, "
                f"the list at {LIST_RATE}/s, verify open-loop at {VERIFY_RATE}/s; "
                f"p99 over {seconds + FILLING_SECONDS:g} s "
                f"from the downloads' start (the first {FILLING_SECONDS:g} s: the exports filling their sockets), idle "
                f"over {seconds:g} s just before; each pacer's first {WARMUP_SECONDS:g} s (its start) left out",
                f"the list meanwhile: {listed['statuses']}, p99 {listed['p99_ms']} ms",
            ],
        )
    ]
