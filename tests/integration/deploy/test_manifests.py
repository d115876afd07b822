"""The kustomize overlays: they build, validate against the Kubernetes schemas and the CRDs, and hang together."""

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from tests.integration.deploy.conftest import OVERLAYS, ROOT
from tests.integration.deploy.manifests import (
    COMMANDS,
    PORTS,
    SERVICES,
    all_containers,
    deployment,
    environment,
    main_container,
    of_kind,
    one,
    pod_templates,
)

# The oldest Kubernetes minor the manifests must apply to; kubernetes-validate bundles its schemas.
KUBERNETES_VERSION = "1.30"
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafkatopic-kafka.strimzi.io-v1beta2.json",
}
CRD_DIR = Path(__file__).parent / "crds"


def validate(doc: dict) -> None:
    crd = CRDS.get((doc["apiVersion"], doc["kind"]))
    if crd:
        jsonschema.validate(doc, json.loads((CRD_DIR / crd).read_text()))
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_of_the_overlay_validates_against_the_kubernetes_schemas_or_its_crd(rendered, overlay):
    errors = []
    for doc in rendered[overlay]:
        try:
            validate(doc)
        except (jsonschema.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {getattr(exc, 'message', exc)}")
    assert not errors, "\n".join(errors)


def test_the_schemas_refuse_a_misspelled_field_and_a_topic_without_its_cluster(rendered):
    docs = rendered["prod"]
    deploy = json.loads(json.dumps(deployment(docs, "keys")))
    deploy["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    rule = json.loads(json.dumps(one(docs, "PrometheusRule", "keyward")))
    rule["spec"]["groups"][0]["rules"][0]["expression"] = rule["spec"]["groups"][0]["rules"][0].pop("expr")
    topic = json.loads(json.dumps(one(docs, "KafkaTopic", "apikeys.lifecycle")))
    del topic["metadata"]["labels"]["strimzi.io/cluster"]
    for broken in (deploy, rule, topic):
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_its_deployment_service_budget_and_monitor_and_the_gateway_its_ingress(rendered, overlay):
    docs = rendered[overlay]
    for service in SERVICES:
        name = f"keyward-{service}"
        pod_labels = deployment(docs, service)["spec"]["template"]["metadata"]["labels"]
        svc = one(docs, "Service", name)
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        assert svc["spec"]["ports"] == [
            {"name": "http", "port": PORTS[service], "targetPort": "http", "protocol": "TCP"}
        ]
        assert one(docs, "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        monitor = one(docs, "ServiceMonitor", name)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert monitor["spec"]["endpoints"][0]["port"] == "http"
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        # The request metrics' own `service` label must win over the operator's target label of that name.
        assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert sorted(h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler")) == [
        "keyward-gateway",
        "keyward-keys",
    ]
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        scaled = one(docs, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in scaled["spec"], "an autoscaled Deployment must leave replicas to its HPA"
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (ingress,) = of_kind(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "keyward-gateway", "port": {"name": "http"}}


def test_production_runs_at_least_three_replicas_of_the_autoscaled_services_and_tls(rendered):
    docs = rendered["prod"]
    assert all(h["spec"]["minReplicas"] >= 3 for h in of_kind(docs, "HorizontalPodAutoscaler"))
    (ingress,) = of_kind(docs, "Ingress")
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_as_non_root_on_a_read_only_root_without_capabilities(rendered, overlay):
    templates = list(pod_templates(rendered[overlay]))
    assert len(templates) == 6  # four services, the keys relay and the re-encryption job
    for where, template in templates:
        pod = template["spec"]
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] == 10001, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        tmp = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in all_containers(template):
            at = f"{where} container {container['name']}"
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, at
            assert sc["readOnlyRootFilesystem"] is True, at
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001, at
            assert sc.get("privileged", False) is False, at
            assert sc["capabilities"] == {"drop": ["ALL"]}, at
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, at
            assert any(m["mountPath"] == "/tmp" and m["name"] in tmp for m in container["volumeMounts"]), at
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{at}: {bound}"
            assert container["image"].split(":")[0].endswith("keyward"), at


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_is_probed_and_drains_before_its_grace_period_ends(rendered, overlay):
    docs = rendered[overlay]
    # uvicorn's timeout_graceful_shutdown in each services/<name>/__main__.py, plus the lifespan's own stop.
    drain = {"keys": 20, "keys-relay": 20, "notifier": 20, "reaper": 20, "gateway": 5}
    for service in SERVICES:
        package, command, port_variable = COMMANDS[service]
        pod = deployment(docs, service)["spec"]["template"]["spec"]
        container = main_container(docs, service)
        assert container["args"] == [f"services.{package}", command]
        assert (ROOT / "services" / package / "__main__.py").exists()  # the commands run in tests of their own
        assert container["ports"] == [{"name": "http", "containerPort": PORTS[service], "protocol": "TCP"}]
        assert {"name": port_variable, "value": str(PORTS[service])} in container["env"]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep" and 2 <= int(command[1]) <= 15, command
        assert pod["terminationGracePeriodSeconds"] >= int(command[1]) + drain[service] + 5, service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_with_a_schema_migrate_it_in_an_init_container_and_the_gateway_has_no_database(rendered, overlay):
    docs = rendered[overlay]
    for service in ("keys", "keys-relay", "notifier", "reaper"):
        schema = COMMANDS[service][0]
        (init,) = deployment(docs, service)["spec"]["template"]["spec"]["initContainers"]
        assert init["args"] == ["shared.migrate", schema]
        assert init["image"] == main_container(docs, service)["image"]
        assert any((ROOT / "services" / schema / "migrations").glob("*.sql"))
        assert "DATABASE_URL" in environment(docs, init)[1]
    gateway = deployment(docs, "gateway")["spec"]["template"]["spec"]
    assert "initContainers" not in gateway
    assert "DATABASE_URL" not in environment(docs, main_container(docs, "gateway"))[1]


def test_the_reencryption_job_is_a_suspended_template_running_the_rotation_command(rendered):
    for overlay in OVERLAYS:
        cron = one(rendered[overlay], "CronJob", "keyward-reencrypt")
        assert cron["spec"]["suspend"] is True
        (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["services.keys", "reencrypt"]
        assert container["image"] == main_container(rendered[overlay], "keys")["image"]


def test_topics_have_the_local_stacks_partitions_and_the_dead_letter_retention(rendered):
    local: dict[str, tuple[int, dict[str, str]]] = {}
    for line in (ROOT / "deploy/local/topics.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            topic, count, *options = line.split()
            local[topic] = (int(count), dict(o.split("=", 1) for o in options))
    for overlay in OVERLAYS:
        topics = {t["metadata"]["name"]: t for t in of_kind(rendered[overlay], "KafkaTopic")}
        assert set(topics) == set(local)
        for name, (partitions, configs) in local.items():
            assert topics[name]["spec"]["partitions"] == partitions
            for key, value in configs.items():
                assert str(topics[name]["spec"]["config"][key]) == value
            assert topics[name]["metadata"]["namespace"] == "kafka", "topics stay with their Kafka cluster"
    assert (
        one(rendered["prod"], "KafkaTopic", "apikeys.lifecycle.dlq")["spec"]["config"]["retention.ms"] == 14 * 86400_000
    )


def test_the_dashboard_ships_as_a_configmap_the_grafana_sidecar_loads(rendered):
    for overlay in OVERLAYS:
        cm = one(rendered[overlay], "ConfigMap", "keyward-dashboard")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        dashboard = json.loads(cm["data"]["keyward.json"])
        assert dashboard["uid"] == "keyward"
        assert len([p for p in dashboard["panels"] if p["type"] == "timeseries"]) >= 15
