"""Writes deploy/k8s/base/dashboards/keyward.json, the Grafana dashboard; `--check` fails if the file differs.

Queries are written with `{NS}` where the namespace matcher goes, so every panel follows the dashboard's
namespace variable.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "k8s" / "base" / "dashboards" / "keyward.json"
NS = 'namespace=~"$namespace"'
VERIFY = 'service="keys", route="/v1/keys/verify", NS'


def quantile(q: str, series: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({series}[5m])))"


# (row, [(title, unit, [(legend, expr), ...]), ...])
ROWS = [
    (
        "Keys",
        [
            (
                "Keys created and deleted per hour",
                "short",
                [
                    ("created", "sum(increase(keyward_keys_created_total{NS}[1h]))"),
                    ("deleted ({{reason}})", "sum by (reason) (increase(keyward_keys_deleted_total{NS}[1h]))"),
                ],
            ),
            (
                "Keys stored",
                "short",
                [("keys", "max(keyward_keys_stored{NS})")],
            ),
            (
                "Verify rate by outcome",
                "reqps",
                [("{{outcome}}", "sum by (outcome) (rate(keyward_verify_total{NS}[5m]))")],
            ),
            (
                "Verify latency",
                "s",
                [
                    (
                        f"p{q}",
                        quantile(f"0.{q}", f"http_request_duration_seconds_bucket{{{VERIFY}}}"),
                    )
                    for q in (50, 99)
                ],
            ),
        ],
    ),
    (
        "Events",
        [
            (
                "Events handled per type",
                "ops",
                [("{{group}} {{type}}", "sum by (group, type) (rate(keyward_events_consumed_total{NS}[5m]))")],
            ),
            (
                "Outbox",
                "short",
                [
                    ("backlog", "max(keyward_outbox_backlog{NS})"),
                    ("oldest unsent (s)", "max(keyward_outbox_oldest_unsent_age_seconds{NS})"),
                ],
            ),
            (
                "Relay",
                "short",
                [
                    ("published/s", "sum(rate(keyward_relay_published_total{NS}[5m]))"),
                    (
                        "lag p99 (s)",
                        "histogram_quantile(0.99, sum by (le) (rate(keyward_relay_lag_seconds_bucket{NS}[5m])))",
                    ),
                    ("failures/s", "sum(rate(keyward_relay_failures_total{NS}[5m]))"),
                    ("leaders", "sum(keyward_relay_leader{NS})"),
                ],
            ),
            (
                "Consumer lag",
                "short",
                [("{{group}}", "sum by (group) (max by (group, partition) (keyward_consumer_lag{NS}))")],
            ),
            (
                "Dead-lettered per hour",
                "short",
                [("{{group}}", "sum by (group) (increase(keyward_events_dead_lettered_total{NS}[1h]))")],
            ),
        ],
    ),
    (
        "Notices",
        [
            (
                "Expiring events per threshold (per hour)",
                "short",
                [("{{threshold}}", "sum by (threshold) (increase(keyward_expiring_announced_total{NS}[1h]))")],
            ),
            (
                "E-mails sent per threshold (per hour)",
                "short",
                [("{{threshold}}", "sum by (threshold) (increase(keyward_notifier_emails_sent_total{NS}[1h]))")],
            ),
            (
                "E-mail failures (per hour)",
                "short",
                [
                    (
                        "{{kind}} {{threshold}}",
                        "sum by (kind, threshold) (increase(keyward_notifier_emails_failed_total{NS}[1h]))",
                    )
                ],
            ),
            (
                "Open deliveries",
                "short",
                [("{{state}}", "max by (state) (keyward_notifier_ledger_open_deliveries{NS})")],
            ),
            (
                "SMTP send latency",
                "s",
                [
                    (
                        "p99",
                        quantile("0.99", "keyward_notifier_send_duration_seconds_bucket{NS}"),
                    )
                ],
            ),
        ],
    ),
    (
        "Reaper",
        [
            (
                "Reaper lag: oldest expired key still present",
                "s",
                [("age", "max(keyward_reaper_oldest_expired_key_age_seconds{NS})")],
            ),
            (
                "Expired keys still present, and the pace of a mass expiry",
                "short",
                [
                    ("expired keys", "max(keyward_reaper_expired_keys{NS})"),
                    ("pace (keys/s)", "sum(keyward_reaper_pace_keys_per_second{NS})"),
                ],
            ),
            (
                "Keys reaped and failed passes (per hour)",
                "short",
                [
                    ("reaped", "sum(increase(keyward_reaper_keys_reaped_total{NS}[1h]))"),
                    ("failed passes", "sum(increase(keyward_reaper_pass_failures_total{NS}[1h]))"),
                ],
            ),
            (
                "Pass duration",
                "s",
                [
                    (
                        "p99",
                        quantile("0.99", "keyward_reaper_pass_duration_seconds_bucket{NS}"),
                    )
                ],
            ),
        ],
    ),
    (
        "HTTP",
        [
            (
                "Requests by service and status",
                "reqps",
                [("{{service}} {{status}}", "sum by (service, status) (rate(http_requests_total{NS}[5m]))")],
            ),
            (
                "5xx ratio",
                "percentunit",
                [
                    (
                        "{{service}}",
                        'sum by (service) (rate(http_requests_total{status=~"5..", NS}[5m]))'
                        " / sum by (service) (rate(http_requests_total{NS}[5m]))",
                    )
                ],
            ),
            ("Live-update streams", "short", [("browsers", "sum(keyward_gateway_live_streams{NS})")]),
        ],
    ),
]


def dashboard() -> dict[str, object]:
    panels: list[dict[str, object]] = []
    y = 0
    for row, graphs in ROWS:
        panels.append({"type": "row", "title": row, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        y += 1
        for i, (title, unit, targets) in enumerate(graphs):
            panels.append(
                {
                    "type": "timeseries",
                    "title": title,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                    "gridPos": {"h": 8, "w": 8, "x": (i % 3) * 8, "y": y + (i // 3) * 8},
                    "targets": [
                        {"refId": chr(65 + n), "legendFormat": legend, "expr": expr.replace("NS", NS)}
                        for n, (legend, expr) in enumerate(targets)
                    ],
                }
            )
        y += 8 * ((len(graphs) + 2) // 3)
    for n, panel in enumerate(panels, start=1):
        panel["id"] = n
    return {
        "uid": "keyward",
        "title": "Keyward",
        "tags": ["keyward"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
                {
                    "name": "namespace",
                    "type": "query",
                    "label": "Namespace",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": {"query": "label_values(keyward_verify_total, namespace)", "refId": "namespace"},
                    "refresh": 2,
                    "includeAll": False,
                },
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if OUT.read_text() == render() else f"{OUT} is stale: run python deploy/tools/dashboard.py")
    OUT.write_text(render())
    print(f"wrote {OUT}")
