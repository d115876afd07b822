"""A pod's stop fits in its grace period: Kubernetes sends SIGKILL terminationGracePeriodSeconds after the stop
begins, and a notifier killed between the SMTP server's acceptance and the ledger's record sends the e-mail
twice. The budget, per Deployment, from the manifests and the code's own bounds:

    preStop sleep (manifest) + uvicorn's drain of in-flight requests (code) + the lifespan's stop (code) + MARGIN
        <= terminationGracePeriodSeconds (manifest)

The lifespan's stop is bounded in the code by SHUTDOWN_SECONDS in each service's app module (the relay's:
RELAY_SHUTDOWN_SECONDS), which every step of the stop keeps to (the notifier's sender stop, the consumers'
bounded stop, cancel_all's timeout, the pools' close).
"""

import importlib

import pytest

import shared.consumer
import shared.observability
import shared.serve
from tests.integration.deploy.conftest import OVERLAYS
from tests.integration.deploy.manifests import SERVICES, deployment, main_container

# Python's exit after the lifespan, tini's, and the kubelet's own lateness.
MARGIN_SECONDS = 5


def code_bound(module: str, name: str) -> float:
    value = getattr(importlib.import_module(module), name, None)
    assert isinstance(value, int | float), (
        f"{module} has no {name}: the most its stop may take, which the code must keep to (issue 19, item 7)"
    )
    return float(value)


def drain_seconds(service: str) -> float:
    """uvicorn's timeout_graceful_shutdown for the service (shared.serve; the gateway gives its own)."""
    if service == "gateway":
        return code_bound("services.gateway.__main__", "GRACEFUL_SHUTDOWN_SECONDS")
    return float(shared.serve.GRACEFUL_SHUTDOWN_SECONDS)


def lifespan_stop_seconds(service: str) -> float:
    if service == "keys-relay":
        return code_bound("services.keys.app", "RELAY_SHUTDOWN_SECONDS")
    package = "keys" if service == "keys-verify" else service
    return code_bound(f"services.{package}.app", "SHUTDOWN_SECONDS")


def pre_stop_seconds(docs: list[dict], service: str) -> float:
    command = main_container(docs, service)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:1] == ["sleep"], command
    return float(command[1])


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_a_pods_stop_fits_in_its_grace_period(rendered, overlay, service):
    docs = rendered[overlay]
    grace = deployment(docs, service)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    parts = {
        "preStop": pre_stop_seconds(docs, service),
        "drain": drain_seconds(service),
        "lifespan": lifespan_stop_seconds(service),
        "margin": MARGIN_SECONDS,
    }
    assert sum(parts.values()) <= grace, f"{service}: {parts} = {sum(parts.values())} s > grace period {grace} s"


def test_the_notifiers_stop_covers_its_consumers_bounded_stop():
    """The consumer ends within shared.consumer.STOP_SECONDS once cancelled; the notifier waits for it (its
    offsets are committed on the way out), so its own bound must leave room for it."""
    assert lifespan_stop_seconds("notifier") >= shared.consumer.STOP_SECONDS


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_readyz_answers_within_its_probes_timeout(rendered, overlay, service):
    """/readyz runs its checks at once, each bounded by CHECK_TIMEOUT_SECONDS (issue 19, item 6): the answer
    comes before the kubelet gives up on the probe, so a hanging dependency reads as failing, not as a timeout."""
    probe = main_container(rendered[overlay], service)["readinessProbe"]
    assert probe.get("timeoutSeconds", 1) >= shared.observability.CHECK_TIMEOUT_SECONDS + 1
