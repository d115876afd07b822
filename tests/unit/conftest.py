"""Unit tests read settings from the environment as a service process does: with its own Kafka principal
(deploy/local/runenv.py gives each process one; the tests' shell, from deploy/local/dev.env, has none)."""

import pytest


@pytest.fixture(autouse=True)
def _kafka_principal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_USERNAME", "unit-tests")
    monkeypatch.setenv("KAFKA_PASSWORD", "unit-tests-kafka-password-not-a-secret")
