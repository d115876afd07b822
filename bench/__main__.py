"""`python -m bench --quick|--full [--only N,N]`: runs the scenarios, prints a table, writes bench/results.json."""

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime

from bench import profile, stack
from bench.settings import FULL, QUICK, load_dev_env


async def _main(sizes_mode: str, only: set[int]) -> int:
    # Imported here so dev.env is applied before any settings are read.
    from bench import report, wrk
    from bench.scenarios import export, listing, notifier, reaper, relay, slow_exports, verify
    from bench.world import Bench

    sizes = QUICK if sizes_mode == "quick" else FULL
    wrk.ensure_wrk()
    shutil.rmtree(stack.LOGS, ignore_errors=True)
    started = datetime.now(UTC)
    results: list[report.Result] = []

    async def attempt(number: int, name: str, scenario: Callable[[], Awaitable[list[report.Result]]]) -> None:
        if only and number not in only:
            return
        t0 = asyncio.get_running_loop().time()
        print(f"[bench] scenario {number}: {name} ...", flush=True)
        outages = len(stack.KAFKA_OUTAGES)
        try:
            produced = await scenario()
            if len(stack.KAFKA_OUTAGES) > outages:
                for r in produced:
                    r.notes.append("Kafka refused connections during this scenario (restarted by another process?)")
            results.extend(produced)
        except Exception as exc:  # a benchmark reports; it does not stop the others
            traceback.print_exc()
            results.append(report.Result(number, name, skipped=f"failed: {type(exc).__name__}: {exc}"[:300]))
        print(f"[bench] scenario {number}: {asyncio.get_running_loop().time() - t0:.1f}s", flush=True)

    async with stack.fresh_database() as dsn:
        topic = await stack.fresh_topic()
        b = Bench(sizes, dsn, topic)
        try:
            await b.setup_directory()
            await b.grow_to(sizes.verify_keys, real_keys=True, keep_plain=True)
            await attempt(1, "verify", lambda: verify.run(b))
            small: list[export.Export] = []
            if not only or 3 in only:
                await b.grow_to(sizes.export_small)
                await attempt(3, "export", lambda: export.measure(b, small))
            if not only or only & {2, 3, 7}:
                await b.grow_to(sizes.list_keys)
            await attempt(2, "list", lambda: listing.run(b))
            await attempt(3, "export", lambda: export.run(b, small))
            await attempt(7, "verify beside slow exports", lambda: slow_exports.run(b))
            await attempt(4, "relay", lambda: relay.run(b))
            await attempt(5, "notifier", lambda: notifier.run(b))
            await attempt(6, "reaper", lambda: reaper.run(b))
        finally:
            shutil.rmtree(b.workdir, ignore_errors=True)
            with contextlib.suppress(Exception):
                await stack.delete_topics()
    results.sort(key=lambda r: r.scenario)
    print()
    print(report.table(results))
    report.write(results, sizes.mode, {**asdict(sizes), "load_seconds": b.timings}, started)
    print(f"\nwritten to {report.RESULTS}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick", help="about two minutes")
    mode.add_argument("--full", action="store_const", dest="mode", const="full", help="the sizes of issue 6")
    parser.add_argument("--profile", action="store_true", help="py-spy the serving process in measured phases")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="for every service process (to try a fix)"
    )
    parser.add_argument("--only", default="", help="comma-separated scenario numbers, e.g. 1,4")
    args = parser.parse_args(argv)
    load_dev_env()
    profile.enabled = args.profile
    stack.EXTRA_ENV.update(dict(item.split("=", 1) for item in args.env))
    os.environ.setdefault("LOG_LEVEL", "INFO")
    logging.basicConfig(level=logging.WARNING)
    only = {int(n) for n in args.only.split(",") if n.strip()}
    return asyncio.run(_main(args.mode or "quick", only))


if __name__ == "__main__":
    sys.exit(main())
