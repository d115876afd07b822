"""A refused setting names the variable and what is wrong with it, never its value: it is often a secret."""

import pytest
from pydantic import ValidationError

from services.gateway.config import Settings as GatewaySettings
from services.keys.config import Settings as KeysSettings
from services.keys.crypto import parse_ring
from services.notifier.config import Settings as NotifierSettings
from services.reaper.config import Settings as ReaperSettings
from shared.auth import parse_service_tokens

LEAKY = "dev-leaky-secret-Zq8Xv3Lw9Pn2Rt7Ys4Kd"


@pytest.mark.parametrize(
    ("settings", "variable", "value"),
    [
        (KeysSettings, "SERVICE_TOKENS", f"gateway:{LEAKY}"),
        (NotifierSettings, "KEYS_TOKEN", LEAKY),
        (ReaperSettings, "KEYS_TOKEN", LEAKY),
        (GatewaySettings, "KEYS_TOKEN", LEAKY),
    ],
)
def test_a_placeholder_secret_is_refused_without_printing_it(settings, variable, value, monkeypatch):
    monkeypatch.setenv("KEYWARD_ENV", "prod")
    monkeypatch.setenv("AUTH_MODE", "jwt")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as refused:
        settings()
    assert variable in str(refused.value)
    assert LEAKY not in str(refused.value) and LEAKY not in repr(refused.value)


def test_a_secret_too_short_is_refused_without_printing_it(monkeypatch):
    monkeypatch.setenv("ACTING_ADMIN_SECRET", "Zq8Xv3Lw9Pn2")
    with pytest.raises(ValidationError) as refused:
        KeysSettings()
    assert "acting_admin_secret" in str(refused.value)
    assert "Zq8Xv3Lw9Pn2" not in str(refused.value)


def test_the_secret_fields_cannot_be_switched_off_from_the_environment(monkeypatch):
    monkeypatch.setenv("KEYWARD_ENV", "prod")
    monkeypatch.setenv("SECRET_FIELDS", "[]")
    monkeypatch.setenv("KEYS_TOKEN", LEAKY)
    with pytest.raises(ValidationError):
        ReaperSettings()


@pytest.mark.parametrize("ring", [f"k1:{LEAKY}", f"{LEAKY}", "k1:c2hvcnQ="])
def test_a_malformed_key_ring_is_refused_without_printing_it(ring):
    with pytest.raises(ValueError) as refused:
        parse_ring(ring, name="KEY_ENCRYPTION_KEYS", exact_bytes=32)
    assert "KEY_ENCRYPTION_KEYS" in str(refused.value)
    assert LEAKY not in str(refused.value) and "c2hvcnQ" not in str(refused.value)


def test_malformed_service_tokens_are_refused_without_printing_them():
    with pytest.raises(ValueError) as refused:
        parse_service_tokens(f"gateway {LEAKY}")
    assert LEAKY not in str(refused.value)
