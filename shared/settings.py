"""The settings base every service builds on: environment variables, one class per service."""

import ipaddress
from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.durations import Duration
from shared.kafka import KafkaAccess

# Values that only belong on a developer's machine; refused anywhere else.
_PLACEHOLDER_MARKERS = ("dev-", "changeme", "insecure")


def _loopback(server: str) -> bool:
    host = server.strip().rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    # Who this service is to the brokers: SASL/SCRAM, over TLS (KAFKA_CA_FILE: the brokers' CA, PEM) unless the
    # brokers are on loopback (the local stack: SASL_PLAINTEXT). Production refuses a connection without SASL.
    kafka_security_protocol: Literal["SASL_SSL", "SASL_PLAINTEXT", "SSL", "PLAINTEXT"] = "SASL_SSL"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    kafka_username: str | None = Field(default=None, min_length=1)
    kafka_password: str | None = Field(default=None, min_length=1)
    kafka_ca_file: str | None = None
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

    @property
    def secrets_in_use(self) -> tuple[str, ...]:
        """The secret fields this process needs (and so must hold real values outside dev)."""
        return self.secret_fields

    @property
    def uses_kafka(self) -> bool:
        """Whether this process talks to the brokers (and so needs its principal); a service without Kafka says no."""
        return True

    @property
    def kafka(self) -> KafkaAccess:
        return KafkaAccess(
            self.kafka_bootstrap_servers,
            self.kafka_security_protocol,
            self.kafka_username,
            self.kafka_password,
            self.kafka_sasl_mechanism,
            self.kafka_ca_file,
        )

    @model_validator(mode="after")
    def _kafka_principal(self) -> "ServiceSettings":
        if not self.uses_kafka:
            return self
        if self.kafka_security_protocol.startswith("SASL_") and not (self.kafka_username and self.kafka_password):
            raise ValueError(f"KAFKA_USERNAME and KAFKA_PASSWORD are required with {self.kafka_security_protocol}")
        if self.production and not self.kafka_security_protocol.startswith("SASL_"):
            raise ValueError(
                "KAFKA_SECURITY_PROTOCOL must be SASL_SSL outside dev: every client of the brokers signs in"
            )
        if (
            self.production
            and self.kafka_security_protocol == "SASL_PLAINTEXT"
            and not all(_loopback(server) for server in self.kafka_bootstrap_servers.split(","))
        ):
            raise ValueError("KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT only to brokers on loopback: use SASL_SSL")
        return self

    @model_validator(mode="after")
    def _refuse_placeholders_outside_dev(self) -> "ServiceSettings":
        if self.production:
            for name in self.secrets_in_use + (("kafka_password",) if self.uses_kafka else ()):
                value = str(getattr(self, name, "") or "")
                if not value or any(marker in value.lower() for marker in _PLACEHOLDER_MARKERS):
                    raise ValueError(f"{name.upper()} holds a development placeholder; set a real secret")
        return self
