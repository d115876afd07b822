from datetime import timedelta

import pytest
from pydantic import ValidationError

from services.keys.config import Settings


def test_durations_and_lists_are_read_as_the_contract_writes_them(monkeypatch):
    monkeypatch.setenv("KEY_LIFETIME", "60s")
    monkeypatch.setenv("EXPIRY_NOTICE_THRESHOLDS", "30s,14s,7s,3s,1s")
    monkeypatch.setenv("EXPIRY_WATCH_INTERVAL", "1s")
    monkeypatch.setenv("REAPER_SERVICES", "reaper, janitor")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.key_lifetime == timedelta(seconds=60)
    assert settings.expiry_notice_thresholds == tuple(timedelta(seconds=s) for s in (30, 14, 7, 3, 1))
    assert settings.expiry_watch_interval == timedelta(seconds=1)
    assert settings.reaper_services == ("reaper", "janitor")


def test_the_defaults_are_a_year_and_the_five_notices(monkeypatch):
    monkeypatch.delenv("KEY_LIFETIME", raising=False)
    monkeypatch.delenv("EXPIRY_NOTICE_THRESHOLDS", raising=False)
    settings = Settings()  # type: ignore[call-arg]
    assert settings.key_lifetime == timedelta(days=365)
    assert [t.days for t in settings.expiry_notice_thresholds] == [30, 14, 7, 3, 1]


def test_a_bad_duration_stops_the_service_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("KEY_LIFETIME", "one year")
    with pytest.raises(ValidationError, match="not a duration"):
        Settings()  # type: ignore[call-arg]


def test_development_secrets_are_refused_in_production(monkeypatch):
    monkeypatch.setenv("KEYWARD_ENV", "prod")
    with pytest.raises(ValidationError, match="placeholder"):
        Settings()  # type: ignore[call-arg]


def test_a_verify_only_process_needs_no_administrators_secrets_and_every_other_process_does(monkeypatch):
    """SERVES=verify finds keys by their HMAC: deploy/k8s gives it neither the encryption keys nor the gateway's
    claim secret. Every other process refuses to start without them."""
    monkeypatch.delenv("KEY_ENCRYPTION_KEYS")
    monkeypatch.delenv("ACTING_ADMIN_SECRET")
    monkeypatch.setenv("SERVES", "verify")
    assert Settings().key_encryption_keys is None  # type: ignore[call-arg]
    for serves in ("all", "admin"):
        monkeypatch.setenv("SERVES", serves)
        with pytest.raises(ValidationError, match="ACTING_ADMIN_SECRET, KEY_ENCRYPTION_KEYS required unless"):
            Settings()  # type: ignore[call-arg]


def test_a_verify_only_process_outside_dev_still_refuses_placeholders_of_what_it_uses(monkeypatch):
    monkeypatch.setenv("KEYWARD_ENV", "prod")
    monkeypatch.delenv("KEY_ENCRYPTION_KEYS")
    monkeypatch.delenv("ACTING_ADMIN_SECRET")
    monkeypatch.setenv("SERVES", "verify")
    with pytest.raises(ValidationError, match="SERVICE_TOKENS holds a development placeholder"):
        Settings()  # type: ignore[call-arg]
