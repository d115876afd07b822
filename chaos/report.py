"""A chaos run's results.json as the Markdown of docs/reliability.md's "Figures of a run".

python -m chaos.report [chaos/results.json]
"""

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from chaos.run import RESULTS


def _n(value: float) -> str:
    return f"{value:,}"


def _faults(result: dict[str, Any]) -> list[str]:
    kinds: Counter[str] = Counter(f["kind"] for f in result["faults"])
    targets: dict[str, list[str]] = defaultdict(list)
    for f in result["faults"]:
        target = f"{f['target']}/{f['path']}" if f.get("path") else f["target"]
        if f["kind"] not in ("smtp-4xx", "postgres-restart"):
            targets[f["kind"]].append(target)
    errors = [f for f in result["faults"] if "error" in f]
    lines = [
        f"{len(result['faults'])} faults, {result.get('overlapping_faults', 0)} of them overlapping the one before "
        f"(longest outage {result.get('longest_outage_s', '?')} s): "
        + ", ".join(
            f"{kind} ×{count}" + (f" ({', '.join(sorted(set(targets[kind])))})" if targets[kind] else "")
            for kind, count in kinds.most_common()
        )
        + "."
    ]
    pairs = [f"{f['overlaps']} + {f['kind']} {f['target']}" for f in result["faults"] if "overlaps" in f]
    if pairs:
        lines.append("Overlapping: " + "; ".join(pairs) + ".")
    if errors:
        lines.append(f"{len(errors)} faults could not be applied: " + "; ".join(f["error"] for f in errors) + ".")
    return lines


def _digests(emails: dict[str, Any]) -> str:
    """The e-mails' split into single ones and digests (runs from before digests were on: nothing)."""
    if "digests" not in emails:
        return ""
    return (
        f" ({_n(emails['singles'])} single, {_n(emails['digests'])} digests: {_n(emails['distinct_digests'])} "
        f"formed, carrying {_n(emails['notices_in_digests'])} notices, the largest {emails['largest_digest']}; "
        f"{emails['mixed']} notices both single and in a digest)"
    )


def markdown(result: dict[str, Any]) -> str:
    fig, checks = result["figures"], result["checks"]
    events, verify, reaping, emails, gateway = (
        fig["events"],
        fig["verify"],
        fig["reaping"],
        fig["emails"],
        fig["gateway"],
    )
    verdict = (
        "All checks passed." if result["passed"] else "FAILED: " + ", ".join(c for c, ok in checks.items() if not ok)
    )
    head = [
        f"Seed {result['seed']}, started {result['started']}: {result['workload']['workload_seconds']:.0f} s of "
        f"workload, {result['wall_seconds']} s in all. {verdict}",
        "",
        *_faults(result),
        "",
        "| guarantee | figure |",
        "| --- | --- |",
    ]
    by_type = ", ".join(f"{_n(v)} {k}" for k, v in events["by_type"].items())
    window = "; ".join(
        f"{name}: {_n(w['deliveries'])} deliveries, mean {w['window_mean_ms']} ms, {100 * w['share_of_uptime']:.2f} % "
        "of its uptime"
        for name, w in emails.get("unrecorded_window", {}).items()
    )
    statuses = ", ".join(f"{_n(v)} {k}" for k, v in sorted(gateway["statuses"].items()))
    memory = fig.get("memory_summary", {})
    harness = ", ".join(
        f"{name} {m['warm_kb'] // 1024} to {m['end_kb'] // 1024} MB"
        for name, m in fig.get("memory_harness", {}).items()
    )
    rows = [
        f"| events | {_n(events['on_topic'])} on the topic ({by_type}); {events['lost']} lost, "
        f"{events['repeated_deliveries']} repeated deliveries, {events['repeated_changes']} repeated changes |",
        f"| verify | {_n(verify['answered'])} answered, {verify['wrong']} wrong; {verify['unavailable_503']} answered "
        f"503, {verify['no_answer_or_other']} without an answer |",
        f"| reaping | {_n(reaping['expired_keys'])} expired keys, {reaping['still_in_database']} left, "
        f"{reaping['without_deleted_event']} without their event ({_n(reaping['reaped'])} by the reaper); delay "
        f"median {reaping['delay_p50_s']} s, max {reaping['delay_max_s']} s (bound {reaping['bound_s']} s), "
        f"{reaping['late']} late |",
        f"| e-mails | {_n(emails['expected'])} (key, threshold, administrator) checked: {emails['missing']} missing, "
        f"{emails['repeated']} repeated, {emails['key_gone_within_allowance']} not owed (the key gone within the "
        f"allowance); {_n(emails['received'])} e-mails{_digests(emails)}, {emails.get('unattributed', 0)} "
        f"unattributed; {_n(emails['refused_4xx'])} refusals during the SMTP outages |",
        f"| SMTP-to-ledger window | {window} |",
        f"| gateway | {_n(gateway['calls'])} calls: {statuses}; {gateway['5xx_not_503_retry_after']} other 5xx |",
        f"| memory | {memory.get('judged', '?')} processes judged, not judged: "
        f"{', '.join(memory.get('not_judged', [])) or 'none'}; largest growth "
        f"{100 * (memory.get('largest_growth') or 0):.1f} %; the harness (not judged): {harness or '?'} |",
    ]
    return "\n".join(head + rows) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else RESULTS
    sys.stdout.write(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
