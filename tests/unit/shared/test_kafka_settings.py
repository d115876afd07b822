"""Every client of the brokers signs in as its service's principal; outside dev, never without SASL, and
over TLS unless the brokers are on loopback."""

import ssl

import pytest
from pydantic import ValidationError

from services.keys.config import Settings as KeysSettings
from services.reaper.config import Settings as ReaperSettings
from shared.kafka import KafkaAccess

TOKEN = "r" * 40
PASSWORD = "Zq8Xv3Lw9Pn2Rt7Ys4Kd-kafka"


def reaper(**values: object) -> ReaperSettings:
    return ReaperSettings(keys_token=TOKEN, **values)  # type: ignore[arg-type]


def test_sasl_without_a_principal_is_refused_naming_both_variables(monkeypatch):
    monkeypatch.delenv("KAFKA_USERNAME")
    with pytest.raises(ValidationError) as refused:
        reaper(kafka_security_protocol="SASL_SSL")
    assert "KAFKA_USERNAME and KAFKA_PASSWORD" in str(refused.value)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_production_refuses_a_connection_that_does_not_sign_in(protocol):
    with pytest.raises(ValidationError) as refused:
        reaper(keyward_env="prod", kafka_security_protocol=protocol, kafka_password=PASSWORD)
    assert "KAFKA_SECURITY_PROTOCOL must be SASL_SSL" in str(refused.value)
    assert reaper(keyward_env="dev", kafka_security_protocol=protocol).kafka.security_protocol == protocol


def test_production_sends_a_password_in_clear_only_over_loopback():
    with pytest.raises(ValidationError) as refused:
        reaper(
            keyward_env="prod",
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_bootstrap_servers="127.0.0.1:9092,kafka-1.example.com:9092",
            kafka_password=PASSWORD,
        )
    assert "SASL_PLAINTEXT only to brokers on loopback" in str(refused.value)
    for loopback in ("127.0.0.1:9092", "localhost:9092", "[::1]:9092"):
        settings = reaper(
            keyward_env="prod",
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_bootstrap_servers=loopback,
            kafka_password=PASSWORD,
        )
        assert settings.kafka.bootstrap == loopback


def test_a_development_kafka_password_is_refused_in_production_without_printing_it():
    with pytest.raises(ValidationError) as refused:
        reaper(keyward_env="prod", kafka_password="dev-reaper-kafka-password-Zq8Xv3")
    assert "KAFKA_PASSWORD" in str(refused.value)
    assert "Zq8Xv3" not in str(refused.value)


def test_a_keys_service_that_does_not_relay_needs_no_kafka_principal(monkeypatch):
    monkeypatch.delenv("KAFKA_USERNAME")
    monkeypatch.delenv("KAFKA_PASSWORD")
    assert not KeysSettings(run_relay=False).uses_kafka  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        KeysSettings(run_relay=True)  # type: ignore[call-arg]


def test_the_client_options_sign_in_and_verify_the_brokers():
    access = KafkaAccess("kafka:9093", "SASL_SSL", "keyward-reaper", PASSWORD)
    options = access.options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("keyward-reaper", PASSWORD)
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert PASSWORD not in repr(access)
    assert "ssl_context" not in KafkaAccess("127.0.0.1:9092", "SASL_PLAINTEXT", "reaper", PASSWORD).options()
