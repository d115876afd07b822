"""Results: one row per scenario (or case) with raw figures, baseline, ratio, targets and `met`."""

import json
import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"


@dataclass
class Check:
    """One target: `value op limit`, e.g. ratio >= 0.6 or p99_ms <= 10."""

    metric: str
    value: float
    op: str
    limit: float

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.op == ">=" else self.value <= self.limit

    def text(self) -> str:
        return f"{self.metric} {self.op} {self.limit:g}"


@dataclass
class Result:
    scenario: int
    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    ratio: float | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    # One line each for the printed table, e.g. "1,034 req/s, p99 117 ms" against "8,731 req/s".
    headline: str = ""
    base_headline: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.skipped else all(c.met for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "scenario": self.scenario,
            "name": self.name,
            "figures": self.figures,
            "baseline": self.baseline,
            "ratio": None if self.ratio is None else round(self.ratio, 3),
            "target": " and ".join(c.text() for c in self.checks),
            "targets": [
                {"metric": c.metric, "value": round(c.value, 3), "op": c.op, "limit": c.limit, "met": c.met}
                for c in self.checks
            ],
            "met": self.met,
            "notes": self.notes,
        }
        if self.skipped:
            body["skipped"] = self.skipped
        return body


def write(results: list[Result], mode: str, sizes: dict[str, Any], started: datetime, path: Path = RESULTS) -> None:
    document = {
        "mode": mode,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "sizes": sizes,
        "scenarios": [r.as_json() for r in results],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def table(results: list[Result]) -> str:
    rows = [("#", "scenario", "measured", "baseline", "ratio", "met", "targets (unmet marked !)")]
    for r in results:
        if r.skipped:
            rows.append((str(r.scenario), r.name, "", "", "", "-", f"skipped: {r.skipped}"))
            continue
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        targets = ", ".join(("" if c.met else "!") + c.text() for c in r.checks)
        rows.append((str(r.scenario), r.name, r.headline, r.base_headline, ratio, "yes" if r.met else "NO", targets))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
        if n == 0:
            lines.append("-" * (sum(widths) + 2 * len(widths) + 10))
    return "\n".join(lines)
