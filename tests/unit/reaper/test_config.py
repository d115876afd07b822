from datetime import timedelta

import pytest
from pydantic import ValidationError

from services.reaper.config import Settings

TOKEN = "a-real-reaper-token-0123456789"


def test_the_interval_and_batch_size_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("REAPER_INTERVAL", "1s")
    monkeypatch.setenv("REAPER_BATCH_SIZE", "250")
    settings = Settings(keys_token=TOKEN)
    assert settings.reaper_interval == timedelta(seconds=1)
    assert settings.reaper_batch_size == 250
    assert settings.port == 8083


def test_the_defaults_are_a_minute_and_a_thousand_keys_a_batch_two_hundred_paced(monkeypatch):
    for name in ("REAPER_INTERVAL", "REAPER_BATCH_SIZE", "REAPER_PACED_BATCH_SIZE", "KEYS_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(keys_token=TOKEN)
    assert (settings.reaper_interval, settings.reaper_batch_size) == (timedelta(seconds=60), 1000)
    assert settings.reaper_paced_batch_size == 200
    assert settings.keys_url == "http://127.0.0.1:8081"


def test_a_mass_expiry_is_spread_over_45s_by_default_never_more_than_three_quarters_of_the_interval(monkeypatch):
    for name in ("REAPER_INTERVAL", "REAPER_SPREAD"):
        monkeypatch.delenv(name, raising=False)
    assert Settings(keys_token=TOKEN).spread == timedelta(seconds=45)
    monkeypatch.setenv("REAPER_INTERVAL", "1s")
    assert Settings(keys_token=TOKEN).spread == timedelta(seconds=0.75)
    monkeypatch.setenv("REAPER_SPREAD", "0s")
    assert Settings(keys_token=TOKEN).spread == timedelta(0)


@pytest.mark.parametrize("value", ["-5s", "45", "soon"])
def test_a_spread_that_is_not_a_duration_is_refused_at_start(value, monkeypatch):
    monkeypatch.setenv("REAPER_SPREAD", value)
    with pytest.raises(ValidationError, match=r"reaper_spread"):
        Settings(keys_token=TOKEN)


@pytest.mark.parametrize("name", ["REAPER_BATCH_SIZE", "REAPER_PACED_BATCH_SIZE"])
@pytest.mark.parametrize("value", ["0", "5001"])
def test_a_batch_size_the_keys_service_would_refuse_is_refused_at_start(name, value, monkeypatch):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings(keys_token=TOKEN)


def test_placeholder_tokens_are_refused_in_production(monkeypatch):
    monkeypatch.setenv("KEYWARD_ENV", "prod")
    with pytest.raises(ValidationError):
        Settings(keys_token="dev-reaper-token-0000000000")
