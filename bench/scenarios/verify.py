"""Scenario 1: verify's throughput against a bare FastAPI endpoint, same uvicorn, same wrk; then its latency
open-loop at half the bare endpoint's capacity.

Both servers run side by side and are loaded in alternating rounds, so a neighbour's burst on this shared
two-core machine hits both alike; each figure is the median over the rounds. The closed loop's p99 is no
latency figure on two cores (64 connections on a saturated server wait 64/rps whatever the code does), so
latency is measured open-loop (`bench.pacer`): requests due at a fixed rate, each timed from when it was due.
"""

import os
import statistics
from dataclasses import dataclass
from typing import Any

import httpx

from bench import pacer, wrk
from bench.profile import profiled
from bench.report import Check, Result
from bench.stack import LOGS, CpuMeter, Process, running
from bench.world import Bench

CONNECTIONS = 64
WARMUP_SECONDS = 2


async def _round(b: Bench, process: Process, keys_file: str, seconds: float) -> wrk.WrkResult:
    url = f"{process.url}/v1/keys/verify"
    return await wrk.run(url, "verify.lua", [keys_file, b.tokens["voice"]], seconds=seconds, connections=CONNECTIONS)


async def _check_answers(b: Bench, process: Process) -> None:
    """The load is real: these keys verify as valid (wrk sees status codes only, not bodies)."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {b.tokens['voice']}"}) as client:
        for key in b.verify_keys[:: max(1, len(b.verify_keys) // 20)]:
            answer = (await client.post(f"{process.url}/v1/keys/verify", json={"key": key})).json()
            if answer.get("valid") is not True:
                raise RuntimeError(f"a loaded key does not verify: {answer}")


def median_figures(runs: list[wrk.WrkResult]) -> dict[str, float]:
    figures = [r.figures() for r in runs]
    merged = {name: round(statistics.median(f[name] for f in figures), 2) for name in figures[0]}
    merged["requests"] = sum(r.requests for r in runs)
    merged["errors"] = sum(r.errors for r in runs)
    merged["non_2xx"] = sum(r.non_2xx for r in runs)
    return merged


@dataclass
class Comparison:
    service: dict[str, float]
    bare: dict[str, float]
    ratio: float
    ratios: list[float]
    cpu: dict[str, float]


async def measure(b: Bench, service: Process, keys_file: str, rounds: int, seconds: float) -> Comparison:
    """Alternating rounds of bare then service; returns both medians and the median per-round ratio."""
    async with running(Process("bare", ["-m", "bench.bare"], {})) as bare:
        for process in (bare, service):
            await _round(b, process, keys_file, WARMUP_SECONDS)
        base_runs, service_runs, cpu = [], [], []
        for n in range(rounds):
            base_runs.append(await _round(b, bare, keys_file, seconds))
            meter = CpuMeter(service=[service.pid]).start()
            async with profiled(service.pid, f"verify-keys-{n}"):
                service_runs.append(await _round(b, service, keys_file, seconds))
            cpu.append(meter.stop())
    ratios = [s.rps / r.rps for s, r in zip(service_runs, base_runs, strict=True)]
    return Comparison(
        service=median_figures(service_runs),
        bare=median_figures(base_runs),
        ratio=statistics.median(ratios),
        ratios=[round(r, 3) for r in ratios],
        cpu={name: statistics.median(c[name] for c in cpu) for name in cpu[0]},
    )


async def _open_loop(process: Process, name: str, rate: int, seconds: float, keys_file: str) -> dict[str, Any]:
    samples = LOGS / f"verify-open-loop-{name}-samples.txt"
    meter = CpuMeter(service=[process.pid]).start()
    async with profiled(process.pid, f"verify-open-loop-{name}"):
        paced = await pacer.finish(
            await pacer.spawn("verify", process.url, rate, seconds, keys_file, samples=str(samples))
        )
    return {**paced, **meter.stop()}


async def run(b: Bench) -> list[Result]:
    keys_file = b.workdir / "verify-keys.txt"
    keys_file.write_text("\n".join(b.verify_keys) + "\n")
    rounds = 3 if b.sizes.mode == "quick" else 5
    load_before = os.getloadavg()[0]
    async with running(b.keys_process()) as keys:
        await _check_answers(b, keys)
        m = await measure(b, keys, str(keys_file), rounds, b.sizes.verify_seconds / rounds)
        open_rate = round(m.bare["requests_per_second"] / 2)
        one_process = await _open_loop(keys, "one-process", open_rate, b.sizes.verify_seconds, str(keys_file))
    # As deploy/k8s runs it: a process that serves verify only (SERVES=verify), at the same rate.
    async with running(b.keys_process(SERVES="verify")) as verifier:
        await _check_answers(b, verifier)
        # Warmed as the one process was by the closed loop before it (its connections' first statements, its
        # PostgreSQL backends' caches): the steady state is measured, not a fresh process's first seconds.
        await _round(b, verifier, str(keys_file), WARMUP_SECONDS)
        paced = await _open_loop(verifier, "apart", open_rate, b.sizes.verify_seconds, str(keys_file))
    service, bare, ratio = m.service, m.bare, m.ratio
    result = Result(
        1,
        "verify",
        figures={
            **service,
            "table_keys": len(b.verify_keys),
            "connections": CONNECTIONS,
            "round_ratios": m.ratios,
            **m.cpu,
        },
        baseline=bare,
        ratio=ratio,
        checks=[Check("ratio", ratio, ">=", 0.6)],
        headline=f"{service['requests_per_second']:,.0f} req/s, p99 {service['p99_ms']:.1f} ms",
        base_headline=f"{bare['requests_per_second']:,.0f} req/s, p99 {bare['p99_ms']:.1f} ms",
    )
    rps = service["requests_per_second"]
    # Little's law: a closed loop of 64 connections on a saturated server waits 64/rps on average.
    result.notes.append(
        f"closed loop, {CONNECTIONS} connections: mean latency is bound to {CONNECTIONS}/rps = "
        f"{1000 * CONNECTIONS / rps:.1f} ms for the service, "
        f"{1000 * CONNECTIONS / bare['requests_per_second']:.1f} ms for the bare endpoint"
    )
    result.notes.append(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores)")
    if service["errors"] or service["non_2xx"]:
        result.notes.append(f"{service['errors']} socket errors and {service['non_2xx']} non-2xx answers")
    errors = paced["sent"] - paced["ok"]
    open_loop = Result(
        1,
        "verify open-loop",
        figures={**paced, "rate_asked": open_rate, "one_process": one_process},
        baseline={"bare_requests_per_second": bare["requests_per_second"]},
        checks=[Check("p99_ms", paced["p99_ms"], "<=", 10), Check("errors", errors, "<=", 0)],
        headline=f"{paced['rate']:,.0f} req/s paced, p99 {paced['p99_ms']:.1f} ms (SERVES=verify)",
        base_headline=f"half of bare's {bare['requests_per_second']:,.0f} req/s",
        notes=[
            f"open loop: {open_rate}/s due at fixed times over {b.sizes.verify_seconds:g} s "
            f"({pacer.CONNECTIONS} connections), each latency from when its request was due",
            f"on a process serving verify only (SERVES=verify); the same rate on the one process (SERVES=all) just "
            f"before: p99 {one_process['p99_ms']} ms",
        ],
    )
    return [result, open_loop]
