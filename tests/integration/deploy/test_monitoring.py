"""Every metric an alert or the dashboard queries is one the running services really export, and every alert
has its entry in docs/operations.md."""

import asyncio
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest
import yaml

from services.keys.config import Settings
from tests.fixtures.processes import ServiceProcess
from tests.integration.conftest import service_env
from tests.integration.deploy.conftest import ROOT
from tests.integration.deploy.manifests import one

_spec = importlib.util.spec_from_file_location("deploy_check", ROOT / "deploy/tools/deploy_check.py")
assert _spec and _spec.loader
deploy_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy_check)

# Series Prometheus makes itself for every target, and kube-state-metrics' view of the Deployments.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
KUBE_STATE_METRICS = {"kube_deployment_status_replicas_available", "kube_deployment_status_condition"}
KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords, labels or durations)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr):
        if not match.group(2) and match.group(1) not in KEYWORDS:
            names.add(match.group(1))
    return names


def exported_names(text: str) -> set[str]:
    """Every series name a /metrics page can produce, including families that have no sample yet."""
    names = {line.split()[0].split("{")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(name)
        if kind in ("histogram", "summary"):
            names |= {f"{name}_sum", f"{name}_count"} | ({f"{name}_bucket"} if kind == "histogram" else set())
    return names


def alert_rules(docs: list[dict]) -> list[dict]:
    rule = one(docs, "PrometheusRule", "keyward")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard_queries(docs: list[dict]) -> list[str]:
    dashboard = json.loads(one(docs, "ConfigMap", "keyward-dashboard")["data"]["keyward.json"])
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    # label_values(metric, label): the metric only.
    queries.append(re.sub(r"label_values\((\w+),\s*\w+\)", r"\1", dashboard["templating"]["list"][1]["query"]["query"]))
    return queries


def test_metric_names_are_read_out_of_promql():
    expr = 'histogram_quantile(0.99, sum by (le) (rate(a_bucket{route="/v1/x", ns=~"$ns"}[5m]))) > 1e-3 and on(ns) b unless c offset 5m'
    assert metric_names(expr) == {"a_bucket", "b", "c"}
    assert metric_names("x_total / ignoring(kind) group_left y_total") == {"x_total", "y_total"}


@pytest.fixture(scope="module")
def scraped(pages: dict[str, str]) -> set[str]:
    """The series names the services export."""
    return set().union(*(exported_names(text) for text in pages.values()))


@pytest.fixture(scope="module")
async def pages(settings: Settings, keys_server: ServiceProcess) -> AsyncIterator[dict[str, str]]:
    """Each service's /metrics page right after its start, each running as the process a pod runs."""
    env = service_env(settings) | {"KEYS_URL": keys_server.url, "REAPER_INTERVAL": "1h"}
    env |= {"EXPIRY_NOTICE_THRESHOLDS": "30d,14d,7d,3d,1d"}
    others = [
        ServiceProcess("notifier", env | {"NOTIFIER_CONSUMER_GROUP": f"notifier-monitoring-{uuid4().hex[:8]}"}),
        ServiceProcess("reaper", env | {"REAPER_CONSUMER_GROUP": f"reaper-monitoring-{uuid4().hex[:8]}"}),
    ]
    started: list[ServiceProcess] = []
    try:
        for process in others:
            started.append(await process.start())
        notifier_url = others[0].url
        gateway = ServiceProcess(
            "gateway",
            env
            | {
                "NOTIFIER_URL": notifier_url,
                "SESSION_SECRET": "dev-session-secret-000000000000000000000000",
                "AUTH_JWT_SECRET": "dev-jwt-secret-0000000000000000000000000000",
            },
        )
        started.append(await gateway.start())
        texts: dict[str, str] = {}
        async with httpx.AsyncClient() as client:
            # Verify once so the request histogram has the verify route (its labels appear with a request).
            token = settings.service_tokens.split(",")[-1].split(":", 1)[1]
            await client.post(
                f"{keys_server.url}/v1/keys/verify", json={"key": "kwk_x"}, headers={"Authorization": f"Bearer {token}"}
            )
            for process in [keys_server, *started]:
                response = await client.get(f"{process.url}/metrics")
                assert response.status_code == 200, process.name
                texts[process.name] = response.text
        yield texts
    finally:
        await asyncio.gather(*(p.stop(timeout=20) for p in started))


def test_every_metric_in_an_alert_is_exported_by_a_service(rendered, scraped):
    for rule in alert_rules(rendered["prod"]):
        used = metric_names(rule["expr"])
        assert used, f"{rule['alert']}: no metric found in {rule['expr']}"
        unknown = used - scraped - PROMETHEUS_OWN - KUBE_STATE_METRICS
        assert not unknown, f"{rule['alert']} queries {sorted(unknown)}, which no service exports"


def test_every_metric_on_the_dashboard_is_exported_by_a_service(rendered, scraped):
    queries = dashboard_queries(rendered["prod"])
    used = set().union(*(metric_names(q) for q in queries))
    assert len(used) >= 20
    assert not used - scraped, f"the dashboard queries {sorted(used - scraped)}, which no service exports"


def test_the_dashboard_file_is_what_its_generator_writes():
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy/tools/dashboard.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_alert_says_what_it_means_in_the_operations_guide_at_a_full_runbook_url_from_one_base(rendered):
    guide = (ROOT / "docs/operations.md").read_text()
    anchors = set(re.findall(r"^#### (Keyward\w+)$", guide, re.MULTILINE))
    base = one(rendered["prod"], "PrometheusRule", "keyward")["metadata"]["annotations"]["keyward.io/runbook-base"]
    assert re.fullmatch(r"https://[^#\s]+/docs/operations\.md", base), base
    for rule in alert_rules(rendered["prod"]):
        assert rule["alert"] in anchors, f"docs/operations.md has no '#### {rule['alert']}'"
        assert rule["annotations"]["runbook_url"] == f"{base}#{rule['alert'].lower()}"
        assert set(rule["annotations"]) == {"summary", "runbook_url"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")


def test_every_alert_has_a_rule_test_where_it_fires_and_one_where_it_stays_quiet(rendered):
    tests = yaml.safe_load(deploy_check.RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in alert_rules(rendered["prod"])}
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet on a healthy series"
    assert fires | quiet <= alerts, "tests of alerts that do not exist"


def test_the_rules_are_valid_and_their_tests_pass(rendered, promtool):
    for result in deploy_check.check_rules(promtool, deploy_check.rule_groups(rendered["prod"])):
        assert result.returncode == 0, result.stdout + result.stderr


def sample(page: str, name: str, **labels: str) -> float | None:
    for line in page.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if found == labels:
                return float(line.rsplit(" ", 1)[1])
    return None


def test_the_counters_alerts_read_with_increase_exist_at_zero_from_the_start(pages):
    """A series born at its first increment reads as no increase: the first dead letter or refused e-mail
    would never alert. Each exists at 0 as soon as the service has started."""
    for service in ("notifier", "reaper"):
        (group,) = set(re.findall(r'keyward_events_dead_lettered_total\{group="([^"]+)"\} 0\.0', pages[service]))
        assert group.startswith(f"{service}-monitoring-"), (service, group)
    for threshold in ("30d", "14d", "7d", "3d", "1d"):
        assert (
            sample(pages["notifier"], "keyward_notifier_emails_failed_total", threshold=threshold, kind="permanent")
            == 0.0
        ), threshold
