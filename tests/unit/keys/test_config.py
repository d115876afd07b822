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
