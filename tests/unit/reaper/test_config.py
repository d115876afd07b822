from datetime import timedelta

import pytest
from pydantic import ValidationError

from services.reaper.config import Settings

TOKENS = "reaper:a-real-reaper-token-0123456789"


def test_the_interval_and_batch_size_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("REAPER_INTERVAL", "1s")
    monkeypatch.setenv("REAPER_BATCH_SIZE", "250")
    settings = Settings(service_tokens=TOKENS)
    assert settings.reaper_interval == timedelta(seconds=1)
    assert settings.reaper_batch_size == 250
    assert settings.port == 8083


def test_the_defaults_are_a_minute_and_a_thousand_keys_a_batch(monkeypatch):
    for name in ("REAPER_INTERVAL", "REAPER_BATCH_SIZE", "KEYS_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(service_tokens=TOKENS)
    assert (settings.reaper_interval, settings.reaper_batch_size) == (timedelta(seconds=60), 1000)
    assert settings.keys_url == "http://127.0.0.1:8081"


@pytest.mark.parametrize("value", ["0", "5001"])
def test_a_batch_size_the_keys_service_would_refuse_is_refused_at_start(value, monkeypatch):
    monkeypatch.setenv("REAPER_BATCH_SIZE", value)
    with pytest.raises(ValidationError):
        Settings(service_tokens=TOKENS)


def test_placeholder_tokens_are_refused_in_production(monkeypatch):
    monkeypatch.setenv("KEYWARD_ENV", "prod")
    with pytest.raises(ValidationError):
        Settings(service_tokens="reaper:dev-reaper-token-0000000000")
