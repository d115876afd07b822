"""Scenario 3: the CSV export's rows per second and the serving process's peak memory, at two sizes.

A fresh keys process per size, so VmHWM (peak resident memory) is that size's alone. curl downloads;
the baseline streams the same rows through the same server-side cursor, decryption and CSV encoder
directly in this process, without HTTP: what the export could do if serving cost nothing.
"""

import asyncio
import csv
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench.profile import profiled
from bench.report import Check, Result
from bench.stack import running
from bench.world import Bench
from services.keys import repository
from services.keys.crypto import KeyCipher, parse_ring
from services.keys.export import key_cells, stream_csv

# "The same for both sizes": the larger export's peak within 10% of the smaller one's.
SAME_PEAK = 1.10
ATTEMPTS = 2


@dataclass
class Export:
    rows: int
    seconds: float
    bytes: int
    peak_mb: float
    baseline_rows_per_second: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


async def _download(url: str, headers: dict[str, str], target: Path) -> tuple[float, int]:
    args = ["curl", "-sS", "--fail", "-o", str(target), "-w", "%{size_download}"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"export download failed: {err.decode()[-500:]}")
    return seconds, int(out)


def _check_csv(path: Path, expected_rows: int, digests: dict[str, bytes]) -> None:
    """Every row is there, and the keys sampled open to what their stored digests say they are."""
    secret = parse_ring(os.environ["KEY_HMAC_SECRETS"], name="KEY_HMAC_SECRETS")
    active = next(iter(secret.values()))
    rows = 0
    with path.open(newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            rows += 1
            if (
                row["id"] in digests
                and hmac.new(active, row["key"].encode(), hashlib.sha256).digest() != digests[row["id"]]
            ):
                raise RuntimeError(f"exported key of {row['id']} does not match its digest")
    if rows != expected_rows:
        raise RuntimeError(f"the export has {rows} rows, not {expected_rows}")


async def _direct(b: Bench) -> float:
    """Rows per second of the same cursor + decryption + CSV encoding, straight from asyncpg."""
    cipher = KeyCipher(parse_ring(os.environ["KEY_ENCRYPTION_KEYS"], name="KEY_ENCRYPTION_KEYS", exact_bytes=32))
    conn = await b.connect()
    count = 0
    started = time.perf_counter()
    try:
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            rows = repository.export_rows(conn, subtree=None, q=None, sort="name", descending=False)

            async def counted():  # type: ignore[no-untyped-def]
                nonlocal count
                async for r in rows:
                    count += 1
                    yield r

            async for _ in stream_csv(key_cells(counted(), cipher)):
                pass
    finally:
        await conn.close()
    return count / (time.perf_counter() - started)


async def measure(b: Bench, into: list[Export]) -> list[Result]:
    """One export of the whole table (as it is now) by a fresh keys process; kept in `into` for `run`."""
    conn = await b.connect()
    try:
        sample = await conn.fetch("SELECT id::text, digest FROM keys.api_keys TABLESAMPLE SYSTEM (1) LIMIT 200")
    finally:
        await conn.close()
    target = b.workdir / "export.csv"
    seconds, direct = float("inf"), 0.0
    async with running(b.keys_process()) as keys:
        # Best of two, each side: a neighbour's burst on this shared machine slows one run, not both.
        for attempt in range(ATTEMPTS):
            async with profiled(keys.pid, f"export-{b.loaded}-{attempt}"):
                took, size = await _download(
                    f"{keys.url}/v1/keys/export.csv", b.admin_headers("GET", "/v1/keys/export.csv"), target
                )
            seconds = min(seconds, took)
            try:
                _check_csv(target, b.loaded, {r["id"]: r["digest"] for r in sample})
            finally:
                target.unlink(missing_ok=True)
            direct = max(direct, await _direct(b))
        peak_kb = keys.status("VmHWM")
    into.append(Export(b.loaded, seconds, size, peak_kb / 1024, direct))
    return []


def _result(e: Export, checks: list[Check], notes: list[str]) -> Result:
    ratio = e.rows_per_second / e.baseline_rows_per_second
    return Result(
        3,
        f"export {e.rows:,} keys",
        figures={
            "rows": e.rows,
            "seconds": round(e.seconds, 2),
            "rows_per_second": round(e.rows_per_second),
            "megabytes": round(e.bytes / 1e6, 1),
            "peak_rss_mb": round(e.peak_mb, 1),
        },
        baseline={"rows_per_second": round(e.baseline_rows_per_second), "what": "same cursor+decrypt+CSV, no HTTP"},
        ratio=ratio,
        checks=[
            Check("rows_per_second", e.rows_per_second, ">=", 50_000),
            Check("peak_rss_mb", e.peak_mb, "<=", 150),
            *checks,
        ],
        notes=notes,
        headline=f"{e.rows_per_second:,.0f} rows/s, peak {e.peak_mb:.0f} MB",
        base_headline=f"{e.baseline_rows_per_second:,.0f} rows/s",
    )


async def run(b: Bench, done: list[Export]) -> list[Result]:
    """The large export now, then a row for each size; the larger one's peak is compared to the smaller's."""
    await measure(b, done)
    small, large = (done[0], done[-1]) if len(done) > 1 else (None, done[-1])
    results = []
    if small is not None:
        results.append(_result(small, [], [f"load average {os.getloadavg()[0]:.1f}"]))
    same = [Check("peak_vs_smaller", large.peak_mb / small.peak_mb, "<=", SAME_PEAK)] if small else []
    results.append(
        _result(large, same, [f"peak memory 'the same' means within {SAME_PEAK - 1:.0%} of the smaller export's"])
    )
    return results
