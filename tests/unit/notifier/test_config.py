import pytest
from pydantic import ValidationError

from services.notifier.config import Settings

TOKENS = {"keys_token": "notifier-token-0123456789", "notices_tokens": "gateway:gateway-token-0123456789"}


def settings(**values: object) -> Settings:
    return Settings(**TOKENS, keyward_env="test", **values)  # type: ignore[arg-type]


def test_the_defaults_send_to_the_local_sink():
    s = settings()
    assert (s.port, s.smtp_host, s.smtp_port) == (8082, "127.0.0.1", 1025)
    assert s.smtp_from == "Keyward <no-reply@keyward.example.com>"
    assert s.envelope_sender == "no-reply@keyward.example.com"
    assert s.keys_url == "http://127.0.0.1:8081" and s.console_url == "http://127.0.0.1:8080"


def test_a_claim_must_outlive_a_whole_smtp_transaction():
    with pytest.raises(ValidationError, match="NOTICE_CLAIM_TIMEOUT"):
        settings(notice_claim_timeout="60s", smtp_timeout="20s")


def test_implicit_tls_and_starttls_exclude_each_other():
    with pytest.raises(ValidationError, match="exclude"):
        settings(smtp_tls=True, smtp_starttls=True)


def test_a_password_never_travels_in_clear_in_production():
    with pytest.raises(ValidationError, match="in clear"):
        Settings(keys_token="n" * 32, notices_tokens="gateway:" + "g" * 32, smtp_username="mailer", keyward_env="prod")  # type: ignore[call-arg]


def test_the_sender_must_hold_an_address():
    with pytest.raises(ValidationError, match="SMTP_FROM"):
        settings(smtp_from="Keyward")
