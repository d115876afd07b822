"""The chaos run's small variant (issue 20): the 3-broker cluster, two replicas of every service, one fault of each
kind on a fixed seed (two of them overlapping others: every replica's path to broker 3 cut while the leading broker
is killed, a keys replica killed while PostgreSQL restarts; and a gateway's Kafka slowed down), with digests on, and
every guarantee checked (chaos/checker.py). About four minutes; `make chaos` is the
long one. The run's results.json is kept beside the test's temporary files, and its verdict shown on failure."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.processes import ROOT

SEED = 26


def main_postmaster() -> str | None:
    """The main stack's PostgreSQL (deploy/local/postgres.sh), which the run's own faults must never stop."""
    try:
        return (ROOT / ".local/postgres/data/postmaster.pid").read_text().split("\n", 1)[0]
    except OSError:
        return None


def test_one_fault_of_each_kind_breaks_no_guarantee(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    postmaster = main_postmaster()
    run = subprocess.run(
        [sys.executable, "-m", "chaos", "--duration", "105", "--seed", str(SEED), "--out", str(results)],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert results.exists(), (
        f"the run ended without a verdict ({run.returncode}):\n{run.stdout[-3000:]}{run.stderr[-3000:]}"
    )
    verdict = json.loads(results.read_text())
    assert main_postmaster() == postmaster, "the run stopped the main stack's PostgreSQL"
    kinds = sorted(f["kind"] for f in verdict["faults"])
    assert kinds == sorted(
        ["kill-replica", "kill-leader", "postgres-restart", "smtp-4xx", "proxy-latency", "proxy-cut"]
    ), kinds
    assert not [f for f in verdict["faults"] if "error" in f], verdict["faults"]
    assert len([f for f in verdict["faults"] if "overlaps" in f]) == 2, verdict["faults"]
    assert {f.get("path") for f in verdict["faults"]} >= {"kafka"}, verdict["faults"]
    # The workload really ran through the faults: keys made, verified, noticed and reaped.
    figures = verdict["figures"]
    emails = figures["emails"]
    assert figures["verify"]["answered"] > 1000 and emails["singles"] + emails["notices_in_digests"] > 100, figures
    # Digests on (issue 21): the notices of a watch pass, or of a backlog a fault held up, go out together.
    assert emails["digests"] > 0 and emails["singles"] > 0, emails
    assert figures["reaping"]["reaped"] > 20, figures["reaping"]
    failed = {name: verdict["findings"] for name, ok in verdict["checks"].items() if not ok}
    assert verdict["passed"], json.dumps({"checks": verdict["checks"], "figures": figures, "failed": failed}, indent=1)[
        :8000
    ]
