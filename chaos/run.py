"""A chaos run: the stack, the workload for `duration` seconds with faults on a seeded schedule, a quiet period
(every key expires and is reaped, every notice goes out), then the verdict, written to chaos/results.json.

    python -m chaos --duration 120 --seed 7                 # one fault of each kind
    python -m chaos --duration 540 --every 30               # a fault every ~30 s, kinds drawn from the seed
    python -m chaos --faults kill-replica,smtp-4xx ...      # only those kinds
    python -m chaos --overlap 0.5 ...                       # half the faults begin while the one before is in progress
"""

import argparse
import asyncio
import fcntl
import json
import logging
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from chaos import checker, faults
from chaos.stack import CLUSTER_SH, HOME, Stack, postgres_pid, rss_kb, running_stack, stop_postgres
from chaos.workload import Workload

log = logging.getLogger("chaos")
RESULTS = Path(__file__).with_name("results.json")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m chaos", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--duration", type=float, default=120, help="seconds of workload (and faults)")
    p.add_argument("--seed", type=int, default=None, help="the schedule's seed (random when left out; printed)")
    p.add_argument("--faults", default=",".join(faults.KINDS), help="kinds of fault, comma-separated")
    p.add_argument("--every", type=float, default=None, help="a fault every ~N s (default: one of each kind)")
    p.add_argument("--gap", type=float, default=5.0, help="seconds between a fault's recovery and the next fault")
    p.add_argument(
        "--overlap",
        type=float,
        default=0.3,
        help="the chance that a fault begins while the one before is in progress (where the two are compatible)",
    )
    p.add_argument("--key-lifetime", type=int, default=60)
    p.add_argument(
        "--thresholds",
        default="50,40",
        help="notice thresholds, seconds before expiry (above the SMTP outage plus NOTICE_RETRY_MAX: 35 s)",
    )
    p.add_argument("--reaper-interval", type=int, default=2)
    p.add_argument(
        "--digest-min",
        type=int,
        default=2,
        help="NOTICE_DIGEST_MIN: more than this many notices falling due together go out as one digest",
    )
    p.add_argument(
        "--digest-window",
        type=int,
        default=5,
        help="NOTICE_DIGEST_WINDOW in seconds (the notices of a watch pass, or of a backlog a fault held up)",
    )
    p.add_argument("--ops-per-second", type=float, default=2.0)
    p.add_argument("--verifies-per-second", type=float, default=20.0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--keep-cluster", action="store_true", help="leave the 3 brokers and the run's PostgreSQL running after the run"
    )
    return p.parse_args(argv)


def broker_pids() -> dict[str, int]:
    """The running brokers (their pid files, as deploy/local/kafka-cluster.sh writes them)."""
    pids = {}
    for node in (1, 2, 3):
        try:
            pid = int((HOME / f"kafka/node-{node}/kafka.pid").read_text().strip())
            if b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids[f"broker-{node}"] = pid
        except (OSError, ValueError):
            continue
    return pids


def process_pids(stack: Stack) -> dict[str, int]:
    """The processes of the system under test: the services' replicas, the brokers and the run's PostgreSQL
    (its postmaster)."""
    pids = {name: r.pid for name, r in stack.replicas.items() if r.pid}
    postgres = postgres_pid()
    if postgres:
        pids["postgresql"] = postgres
    return {**pids, **broker_pids()}  # type: ignore[dict-item]


class MemoryWatch:
    """Each process's resident size once it has warmed up, against its size at the end.

    A process restarted by a fault is a new one: it is measured `warmup` seconds after it was first seen, and judged
    if it then lived at least `warmup` seconds more, so that a long run (where a fault has restarted most processes)
    still judges them all; one restarted too late to be judged is reported as such."""

    def __init__(self, stack: Stack, warmup: float) -> None:
        self.stack, self.warmup = stack, warmup
        self.seen: dict[str, tuple[int, float]] = {}  # name: (pid, first seen)
        self.warm: dict[str, tuple[int, int, float]] = {}  # name: (pid, kB, when)
        self.incarnations: Counter[str] = Counter()

    def sample(self) -> None:
        now = time.monotonic()
        for name, pid in process_pids(self.stack).items():
            if self.seen.get(name, (0, 0.0))[0] != pid:
                self.seen[name] = (pid, now)
                self.incarnations[name] += 1
            since = self.seen[name][1]
            if now - since >= self.warmup and self.warm.get(name, (0, 0, 0.0))[0] != pid:
                kb = rss_kb(pid)
                if kb:
                    self.warm[name] = (pid, kb, now)

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(2)

    def verdict(self) -> dict[str, dict[str, Any]]:
        now, end = time.monotonic(), process_pids(self.stack)
        memory: dict[str, dict[str, Any]] = {}
        for name in sorted(self.seen):
            entry: dict[str, Any] = {"incarnations": self.incarnations[name]}
            warm = self.warm.get(name)
            if warm and end.get(name) == warm[0] and now - warm[2] >= self.warmup and rss_kb(warm[0]):
                entry.update(warm_kb=warm[1], end_kb=rss_kb(warm[0]) or 0, observed_s=round(now - warm[2]))
            else:
                entry.update(restarted=True, judged=False)  # too late (or still restarting) at the end
            memory[name] = entry
        return memory


def harness_pids(stack: Stack) -> dict[str, int]:
    """The run's own tools, measured but not judged: toxiproxy (a Go heap that grows with the connections it has
    proxied, thousands in a run as faults cut them) is no part of what is deployed."""
    process = stack.toxiproxy.process
    return {"toxiproxy": process.pid} if process and process.poll() is None else {}


async def unrecorded_window(stack: Stack) -> dict[str, Any]:
    """The window that cannot be closed: from the SMTP server's 250 to the ledger's record of it, a SIGKILL there
    sends a second copy. Its total length over each notifier's uptime is the chance that a kill at a random
    moment lands in it (each replica's figures since its last start)."""
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        for replica in stack.by_service("notifier"):
            try:
                text = (await client.get(f"{replica.url}/metrics")).text
            except httpx.HTTPError:
                continue
            total = re.search(r"^keyward_notifier_unrecorded_window_seconds_sum (\S+)$", text, re.MULTILINE)
            count = re.search(r"^keyward_notifier_unrecorded_window_seconds_count (\S+)$", text, re.MULTILINE)
            if total and count:
                seconds, deliveries = float(total.group(1)), float(count.group(1))
                uptime = time.monotonic() - replica.started_at
                out[replica.name] = {
                    "deliveries": int(deliveries),
                    "window_total_s": round(seconds, 4),
                    "window_mean_ms": round(1000 * seconds / deliveries, 3) if deliveries else None,
                    "share_of_uptime": round(seconds / uptime, 6),
                }
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)
    kinds = [k for k in args.faults.split(",") if k]
    unknown = set(kinds) - set(faults.KINDS)
    if unknown:
        raise SystemExit(f"unknown fault kinds: {sorted(unknown)} (known: {', '.join(faults.KINDS)})")
    thresholds = sorted((int(t) for t in args.thresholds.split(",")), reverse=True)
    replica_names = [f"{s}-{i}" for s in ("keys", "notifier", "reaper", "gateway") for i in (1, 2)]
    # The faults start once the workload has warmed up and end before its last fifth.
    warmup = min(30.0, args.duration * 0.15)
    schedule = faults.schedule(
        rng,
        kinds,
        start=warmup + 5,
        end=args.duration * 0.8,
        every=args.every,
        replicas=replica_names,
        overlap=args.overlap,
    )
    overlapping = sum(f.overlaps is not None for f in schedule)
    print(
        f"chaos: seed {seed}, {args.duration:.0f}s of workload, {len(schedule)} faults ({overlapping} overlapping):",
        flush=True,
    )
    for i, fault in enumerate(schedule):
        print(f"  #{i + 1:<3} {fault.describe()}", flush=True)
    # The longest outage: a fault's pause, or a fault and the one overlapping it together.
    longest = max((faults.outage(schedule, i) for i in range(len(schedule))), default=0.0)
    recovery = longest + 15.0
    # Every key of the workload expires, is reaped and has its notices sent; the faults are over by then.
    quiet = args.key_lifetime + args.reaper_interval + 15.0
    logs = HOME / "logs" / time.strftime("%Y%m%d-%H%M%S")
    started = time.time()
    async with running_stack(
        key_lifetime=args.key_lifetime,
        thresholds=thresholds,
        reaper_interval=args.reaper_interval,
        logs=logs,
        digest_min=args.digest_min,
        digest_window=args.digest_window,
    ) as stack:
        print(f"chaos: stack up in {time.time() - started:.0f}s (topic {stack.topic}, logs {logs})", flush=True)
        workload = Workload(
            stack,
            random.Random(seed + 1),
            ops_per_second=args.ops_per_second,
            verifies_per_second=args.verifies_per_second,
        )
        t0 = time.monotonic()
        runner = asyncio.create_task(workload.run())
        faulting = asyncio.create_task(faults.run_schedule(stack, schedule, t0, args.gap))
        watch = MemoryWatch(stack, warmup)
        watching = asyncio.create_task(watch.run())
        await asyncio.sleep(warmup)
        harness_warm = {name: rss_kb(pid) for name, pid in harness_pids(stack).items()}
        await asyncio.sleep(max(0.0, args.duration - warmup))
        await faulting  # a fault still running ends (and recovers) before the workload stops
        workload.stop()
        await runner
        workload_end = time.time()
        print(f"chaos: workload done ({workload.history.summary()}); quiet for {quiet:.0f}s", flush=True)
        await asyncio.sleep(quiet)
        watching.cancel()
        watch.sample()
        memory = watch.verdict()
        window = await unrecorded_window(stack)
        events = await checker.read_topic(stack)
        verdict = await checker.verdict(
            stack,
            workload.history,
            schedule,
            events,
            memory,
            workload_end=time.time() - args.reaper_interval - recovery,
            recovery=recovery,
        )
        verdict.figures["emails"]["unrecorded_window"] = window
        verdict.figures["memory_harness"] = {
            name: {"warm_kb": harness_warm.get(name) or 0, "end_kb": rss_kb(pid) or 0}
            for name, pid in harness_pids(stack).items()
        }
        restarts = {name: r.starts - 1 for name, r in stack.replicas.items() if r.starts > 1}
    return {
        "seed": seed,
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": args.duration,
        "quiet_s": quiet,
        "settings": {
            "key_lifetime_s": args.key_lifetime,
            "thresholds_s": thresholds,
            "reaper_interval_s": args.reaper_interval,
            "notice_digest_min": args.digest_min,
            "notice_digest_window_s": args.digest_window,
            "ops_per_second": args.ops_per_second,
            "verifies_per_second": args.verifies_per_second,
            "brokers": 3,
            "replication_factor": 3,
            "min_insync_replicas": 2,
            "overlap": args.overlap,
            "gap_s": args.gap,
            "postgresql": "the run's own (deploy/local/postgres.sh, KEYWARD_PG_HOME=.local/chaos/postgres, port 29432)",
        },
        "overlapping_faults": overlapping,
        "longest_outage_s": round(longest, 1),
        "faults": [
            {
                "at_s": f.at,
                "kind": f.kind,
                "target": f.target,
                **({"path": f.path} if f.path else {}),
                **(
                    {"overlaps": f"#{f.overlaps + 1} {schedule[f.overlaps].kind}", "offset_s": f.offset}
                    if f.overlaps is not None
                    else {}
                ),
                "pause_s": round(f.pause, 1),
                "took_s": round(f.ended - f.started, 1),
                **f.details,
            }
            for f in schedule
        ],
        "restarts": restarts,
        "workload": {**workload.history.summary(), "workload_seconds": round(workload_end - started, 1)},
        "figures": verdict.figures,
        "checks": verdict.checks,
        "findings": verdict.findings,
        "passed": verdict.passed,
        "wall_seconds": round(time.time() - started),
    }


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    args = parse(argv)
    # One run at a time: two would share the brokers, the PostgreSQL, toxiproxy's port and the proxies' ports, and
    # each would stop what the other uses at its end.
    HOME.mkdir(parents=True, exist_ok=True)
    lock = (HOME / "run.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"chaos: another chaos run is in progress ({HOME / 'run.lock'}); run this one after it", file=sys.stderr)
        return 3
    try:
        result = asyncio.run(run(args))
    finally:
        if not args.keep_cluster:  # three JVMs and a PostgreSQL: not left holding the machine's memory
            subprocess.run(["bash", str(CLUSTER_SH), "stop"], check=False)
            asyncio.run(stop_postgres())
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(
        json.dumps(
            {"seed": result["seed"], "checks": result["checks"], "figures": result["figures"]}, indent=2, default=str
        )
    )
    print(f"chaos: {'PASSED' if result['passed'] else 'FAILED'} ({args.out})")
    return 0 if result["passed"] else 1
