"""docs/contract.md names every environment variable a service reads: a new setting fails here until it is
documented there (in the same commit)."""

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from services.gateway.config import Settings as GatewaySettings
from services.keys.config import RelaySettings
from services.keys.config import Settings as KeysSettings
from services.notifier.config import Settings as NotifierSettings
from services.reaper.config import Settings as ReaperSettings

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"
# Fields of a settings class that are not environment variables of the contract.
NOT_VARIABLES = frozenset({"secret_fields", "model_config"})
SETTINGS: list[type[BaseSettings]] = [
    KeysSettings,
    RelaySettings,
    NotifierSettings,
    ReaperSettings,
    GatewaySettings,
]


def environment_variables(settings: type[BaseSettings]) -> list[str]:
    return sorted(name.upper() for name in settings.model_fields if name not in NOT_VARIABLES)


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s.__module__}.{s.__name__}")
def test_the_contract_names_every_environment_variable_of_the_settings(settings: type[BaseSettings]) -> None:
    contract = CONTRACT.read_text(encoding="utf-8")
    missing = [name for name in environment_variables(settings) if f"`{name}`" not in contract]
    assert not missing, (
        f"docs/contract.md does not name {', '.join(missing)} (read by {settings.__module__}.{settings.__name__})"
    )
