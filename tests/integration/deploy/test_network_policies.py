"""The NetworkPolicies, evaluated as Kubernetes does (a pod with policies of a type accepts only what one of
them allows): who may reach each service, and what each service may reach."""

import ipaddress
from dataclasses import dataclass, field

import pytest

from tests.integration.deploy.conftest import OVERLAYS
from tests.integration.deploy.manifests import PGBOUNCER, PORTS, SERVICES, deployment, of_kind

NAMESPACE = {"dev": "keyward-dev", "prod": "keyward"}


@dataclass(frozen=True)
class Peer:
    """A pod: its namespace, the namespace's labels, its own labels; or, with `ip`, an address outside."""

    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)
    ip: str | None = None


def pod(namespace: str, **labels: str) -> Peer:
    return Peer(namespace, labels, {"kubernetes.io/metadata.name": namespace})


def service_pod(overlay: str, service: str) -> Peer:
    labels = {"app.kubernetes.io/name": f"keyward-{service}", "app.kubernetes.io/part-of": "keyward"}
    return Peer(NAMESPACE[overlay], labels, {"kubernetes.io/metadata.name": NAMESPACE[overlay]})


INGRESS_CONTROLLER = pod("ingress-nginx", **{"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS = pod("monitoring", **{"app.kubernetes.io/name": "prometheus"})
VERIFY_CALLER = Peer(
    "voice", {"app": "voice-gateway"}, {"kubernetes.io/metadata.name": "voice", "keyward.io/verify-client": "true"}
)
STRANGER = pod("other-team", app="anything")
KAFKA_BROKER = pod("kafka", **{"strimzi.io/cluster": "keyward", "strimzi.io/kind": "Kafka"})
KUBE_DNS = pod("kube-system", **{"k8s-app": "kube-dns"})
OUTSIDE = Peer(ip="203.0.113.10")
# Production's PostgreSQL and SMTP relay: the addresses the prod overlay narrows egress to.
PROD_DATABASE = Peer(ip="192.0.2.10")
PROD_SMTP = Peer(ip="192.0.2.25")
# Production's OpenID provider (the console's sign-in), likewise.
PROD_OIDC = Peer(ip="192.0.2.43")


def matches(selector: dict | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    assert set(selector) <= {"matchLabels", "matchExpressions"}, f"evaluator knows no more: {selector}"
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", f"evaluator knows In only: {expression}"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return selector.get("matchLabels", {}).items() <= labels.items()


def peer_matches(rule_peer: dict, peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        if peer.ip is None:
            return False
        address, block = ipaddress.ip_address(peer.ip), rule_peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(other) for other in block.get("except", [])
        )
    if peer.ip is not None:
        return False
    if "namespaceSelector" in rule_peer:
        ns_ok = matches(rule_peer["namespaceSelector"], peer.namespace_labels)
    else:
        ns_ok = peer.namespace == policy_namespace
    return ns_ok and matches(rule_peer.get("podSelector"), peer.labels)


def port_matches(rule_ports: list[dict] | None, port: int, protocol: str) -> bool:
    return rule_ports is None or any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in rule_ports)


def allowed(docs: list[dict], overlay: str, source: Peer, target: Peer, port: int, protocol: str = "TCP") -> bool:
    """Egress of `source` (if it is ours) and ingress of `target` (if it is ours) must both allow it."""
    ns = NAMESPACE[overlay]
    policies = of_kind(docs, "NetworkPolicy")

    def side(pod_: Peer, direction: str, other: Peer) -> bool:
        if pod_.namespace != ns:
            return True  # not governed by these policies
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        applying = [
            p
            for p in policies
            if matches(p["spec"]["podSelector"] or None, pod_.labels) and direction in p["spec"]["policyTypes"]
        ]
        if not applying:
            return True
        for policy in applying:
            for rule in policy["spec"].get(key, []):
                peers = rule.get(peers_key)
                if (peers is None or any(peer_matches(r, other, ns) for r in peers)) and port_matches(
                    rule.get("ports"), port, protocol
                ):
                    return True
        return False

    return side(source, "Egress", target) and side(target, "Ingress", source)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_takes_traffic_from_the_ingress_controller(rendered, overlay):
    docs = rendered[overlay]
    for service in SERVICES:
        reachable = allowed(docs, overlay, INGRESS_CONTROLLER, service_pod(overlay, service), PORTS[service])
        assert reachable == (service == "gateway"), service
        assert not allowed(docs, overlay, STRANGER, service_pod(overlay, service), PORTS[service]), service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_is_reached_only_by_the_services_that_call_it(rendered, overlay):
    docs = rendered[overlay]
    callers = {
        "keys": {"gateway", "notifier", "reaper"},
        "keys-verify": set(),
        "keys-relay": set(),
        "notifier": {"gateway"},
        "reaper": set(),
        "gateway": set(),
    }
    for target, expected in callers.items():
        for source in SERVICES:
            if source == target:
                continue
            ok = allowed(docs, overlay, service_pod(overlay, source), service_pod(overlay, target), PORTS[target])
            assert ok == (source in expected), f"{source} -> {target}"
    # Voice clients' services reach verify's pods, and not the administrators' keys service.
    assert allowed(docs, overlay, VERIFY_CALLER, service_pod(overlay, "keys-verify"), 8081)
    assert not allowed(docs, overlay, VERIFY_CALLER, service_pod(overlay, "keys"), 8081)
    assert not allowed(docs, overlay, VERIFY_CALLER, service_pod(overlay, "notifier"), 8082)
    for service in SERVICES:
        assert allowed(docs, overlay, PROMETHEUS, service_pod(overlay, service), PORTS[service]), service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_reaches_its_dependencies_and_nothing_else(rendered, overlay):
    docs = rendered[overlay]
    config = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("keyward-config"))["data"]
    smtp_port = int(config["SMTP_PORT"])
    smtp = pod(NAMESPACE[overlay], **{"app.kubernetes.io/name": "mailpit"}) if overlay == "dev" else PROD_SMTP
    database_peer = OUTSIDE if overlay == "dev" else PROD_DATABASE
    database = {"keys", "keys-verify", "keys-relay", "notifier", "reaper", "gateway"}
    provider = OUTSIDE if overlay == "dev" else PROD_OIDC
    # The keys service's API replicas (RUN_RELAY=false) leave Kafka to the relay.
    kafka_clients = {"keys-relay", "notifier", "reaper", "gateway"}
    kafka_port = int(config["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])
    assert kafka_port == 9093, "the TLS listener of Strimzi's cluster"
    for service in SERVICES:
        me = service_pod(overlay, service)
        assert allowed(docs, overlay, me, KUBE_DNS, 53, "UDP"), service
        # Kafka's TLS listener (SASL over TLS) for the services that use Kafka; its plain listener for nobody.
        assert allowed(docs, overlay, me, KAFKA_BROKER, kafka_port) == (service in kafka_clients), service
        assert not allowed(docs, overlay, me, KAFKA_BROKER, 9092), f"{service} reaches Kafka's plain listener"
        assert allowed(docs, overlay, me, database_peer, 5432) == (service in database), service
        if overlay == "dev":  # the development database runs in the namespace
            postgres = pod(NAMESPACE[overlay], **{"app.kubernetes.io/name": "postgres"})
            assert allowed(docs, overlay, me, postgres, 5432) == (service in database), service
        assert allowed(docs, overlay, me, smtp, smtp_port) == (service == "notifier"), service
        # The gateway reaches the OpenID provider over https (at its address only in production); nobody else.
        assert allowed(docs, overlay, me, provider, 443) == (service == "gateway"), service
        if overlay == "prod" or service != "gateway":
            assert not allowed(docs, overlay, me, OUTSIDE, 443), f"{service} reaches the internet"
        assert not allowed(docs, overlay, me, STRANGER, 8080), service
    # Every pod a policy selects is one of ours: a typo in a selector would leave a pod unprotected.
    pod_labels = [deployment(docs, s)["spec"]["template"]["metadata"]["labels"] for s in SERVICES]
    pod_labels += [d["spec"]["template"]["metadata"]["labels"] for d in of_kind(docs, "Deployment")]
    for policy in of_kind(docs, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]
        if selector and policy["metadata"]["name"] != "keyward-reencrypt":
            assert any(matches(selector, labels) for labels in pod_labels), policy["metadata"]["name"]


def test_production_reaches_postgresql_and_smtp_at_their_addresses_only(rendered):
    docs = rendered["prod"]
    for service in ("keys", "keys-verify", "keys-relay", "notifier", "reaper", "gateway"):
        me = service_pod("prod", service)
        assert allowed(docs, "prod", me, PROD_DATABASE, 5432), service
        assert not allowed(docs, "prod", me, OUTSIDE, 5432), f"{service} reaches any address on 5432"
    reencrypt = Peer("keyward", {"app.kubernetes.io/name": "keyward-reencrypt", "app.kubernetes.io/part-of": "keyward"})
    assert allowed(docs, "prod", reencrypt, PROD_DATABASE, 5432)
    assert not allowed(docs, "prod", reencrypt, OUTSIDE, 5432)
    notifier = service_pod("prod", "notifier")
    for port in (25, 465, 587):
        assert allowed(docs, "prod", notifier, PROD_SMTP, port), port
        assert not allowed(docs, "prod", notifier, OUTSIDE, port), f"the notifier reaches any address on {port}"


def test_the_evaluator_denies_what_no_policy_allows(rendered):
    docs = [d for d in rendered["prod"] if d["kind"] != "NetworkPolicy" or d["metadata"]["name"] != "keyward-keys"]
    default_deny_only = allowed(docs, "prod", service_pod("prod", "gateway"), service_pod("prod", "keys"), 8081)
    assert not default_deny_only


def test_pgbouncer_is_reached_by_the_pools_that_go_through_it_and_reaches_postgresql_only(rendered):
    """Production's pools go through PgBouncer (deploy/k8s/pgbouncer): the keys service and its verify pods,
    notifier, reaper, gateway and the re-encryption job reach it; the relay, whose lock and LISTEN need a session,
    does not need to."""
    docs = rendered["prod"]
    bouncer = Peer("keyward", {"app.kubernetes.io/name": PGBOUNCER, "app.kubernetes.io/part-of": "keyward"})
    bouncer.namespace_labels["kubernetes.io/metadata.name"] = "keyward"
    through = {"keys", "keys-verify", "notifier", "reaper", "gateway"}
    for service in SERVICES:
        assert allowed(docs, "prod", service_pod("prod", service), bouncer, 6432) == (service in through), service
    reencrypt = Peer("keyward", {"app.kubernetes.io/name": "keyward-reencrypt", "app.kubernetes.io/part-of": "keyward"})
    assert allowed(docs, "prod", reencrypt, bouncer, 6432)
    for stranger in (STRANGER, PROMETHEUS, VERIFY_CALLER):
        assert not allowed(docs, "prod", stranger, bouncer, 6432), stranger
    assert allowed(docs, "prod", bouncer, PROD_DATABASE, 5432)
    assert allowed(docs, "prod", bouncer, KUBE_DNS, 53, "UDP")
    assert not allowed(docs, "prod", bouncer, OUTSIDE, 5432)
    assert not allowed(docs, "prod", bouncer, KAFKA_BROKER, 9093)
    assert not allowed(docs, "prod", bouncer, service_pod("prod", "keys"), 8081)
    # Development fits PostgreSQL without it (test_connection_budget.py).
    assert PGBOUNCER not in {d["metadata"]["name"] for d in of_kind(rendered["dev"], "Deployment")}
