"""The settings base every service builds on: environment variables, one class per service."""

from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.durations import Duration

# Values that only belong on a developer's machine; refused anywhere else.
_PLACEHOLDER_MARKERS = ("dev-", "changeme", "insecure")


def split_names(value: object) -> object:
    """'a, b,c' -> ('a', 'b', 'c'); other values pass through to the field's own validation."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class ServiceSettings(BaseSettings):
    # A value never appears in a validation error: a refused setting is often a secret.
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True, hide_input_in_errors=True)

    # `dev` is a developer's machine; every other value (prod, staging, test, ...) takes production rules.
    keyward_env: str = Field(default="prod", min_length=1)
    database_url: str = "postgresql://keyward:keyward@127.0.0.1:55432/keyward"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic: str = "apikeys.lifecycle"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    http_host: str = "127.0.0.1"
    # The longest a request waits for a pooled database connection; past it the answer is a 503 with Retry-After.
    db_acquire_timeout: Duration = timedelta(seconds=2)

    # Names of fields holding secrets; subclasses extend it.
    secret_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def production(self) -> bool:
        """Production rules (real secrets, Secure cookies, no development sign-in) everywhere but `dev`."""
        return self.keyward_env != "dev"

    @model_validator(mode="after")
    def _refuse_placeholders_outside_dev(self) -> "ServiceSettings":
        if self.production:
            for name in self.secret_fields:
                value = str(getattr(self, name, "") or "")
                if not value or any(marker in value.lower() for marker in _PLACEHOLDER_MARKERS):
                    raise ValueError(f"{name.upper()} holds a development placeholder; set a real secret")
        return self
