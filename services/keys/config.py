"""The keys service's settings (and the relay's, when it runs as a process of its own): lifetimes, thresholds,
the secrets that seal and find keys, and who may call."""

from datetime import timedelta
from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import NoDecode

from shared.durations import Duration, DurationOrZero, Thresholds
from shared.settings import ServiceSettings, split_names


class RelaySettings(ServiceSettings):
    """`python -m services.keys relay`: the outbox relay on its own, holding no key material."""

    relay_port: int = 8091
    outbox_retention: Duration = timedelta(days=7)
    relay_db_pool_size: int = Field(default=4, ge=1)


class Settings(ServiceSettings):
    port: int = 8081
    # False where the relay runs as its own process (`python -m services.keys relay`, the `keys-relay`
    # Deployment): the replicas that serve verify then spend no CPU on publishing events.
    run_relay: bool = True
    # What this process answers: `all` (one process, as in development), `verify` (POST /v1/keys/verify only, on
    # verify's pool: no administrators' routes, relay, watchers or gauges), `admin` (every route but verify).
    # Verify apart runs on an event loop and CPU share no export or list can hold (docs/benchmarks.md, issue 18).
    serves: Literal["all", "verify", "admin"] = "all"
    key_lifetime: Duration = timedelta(days=365)
    # How long a rolled key goes on verifying beside its successor when the roll names no overlap.
    rotation_overlap: DurationOrZero = timedelta(days=7)
    expiry_notice_thresholds: Thresholds = Field(
        default=tuple(timedelta(days=d) for d in (30, 14, 7, 3, 1)),
    )
    expiry_watch_interval: Duration = timedelta(seconds=60)
    # How often last_used_at is written, in one statement for every key verified since.
    usage_flush_interval: Duration = timedelta(seconds=5)
    outbox_retention: Duration = timedelta(days=7)
    max_body_bytes: int = 64 * 1024
    # Administrators' calls, exports, the reaper's and the notifier's calls; verify has a pool of its own, which
    # nothing else takes (its connections also answer the readiness check).
    db_pool_size: int = Field(default=20, ge=1)
    # Where verify's pool connects; unset: DATABASE_URL. Through PgBouncer, its own database entry (its own server
    # connections and pool size), so that administrators' transactions cannot take every server connection verify
    # would wait for (docs/operations.md, "Database connections").
    verify_database_url: str | None = Field(default=None, min_length=1)
    # 8: with 4, most of a burst's requests queued for a connection (docs/benchmarks.md, figures behind the code).
    verify_db_pool_size: int = Field(default=8, ge=1)
    # The most verify requests that share one statement (services/keys/lookups.py); 1: a statement each.
    verify_batch_max: int = Field(default=64, ge=1, le=1000)
    # Exports streaming at once, per administrator and per replica (beyond: 429 with Retry-After); each holds a
    # connection of DB_POOL_SIZE and a repeatable-read transaction until its end.
    exports_per_admin: int = Field(default=2, ge=1)
    exports_per_replica: int = Field(default=4, ge=1)
    # A whole export's bound, and how long one chunk may wait for a reader that takes no data: then it ends.
    export_deadline: Duration = timedelta(minutes=10)
    export_stall_timeout: Duration = timedelta(seconds=60)
    # Services (names in SERVICE_TOKENS) allowed to delete expired keys.
    reaper_services: Annotated[tuple[str, ...], NoDecode, BeforeValidator(split_names)] = ("reaper",)

    # Secrets: no defaults. Rings are comma-separated `id:base64` entries, the first one active. A process that
    # serves verify only (SERVES=verify) finds keys by their HMAC and never opens or seals one, nor takes an
    # administrator's word: it needs neither ACTING_ADMIN_SECRET nor KEY_ENCRYPTION_KEYS (ADMIN_SECRETS), and
    # deploy/k8s gives it neither.
    service_tokens: str
    acting_admin_secret: str | None = Field(default=None, min_length=32)
    key_hmac_secrets: str
    key_encryption_keys: str | None = Field(default=None, min_length=1)

    ADMIN_SECRETS: ClassVar[tuple[str, ...]] = ("acting_admin_secret", "key_encryption_keys")

    @model_validator(mode="after")
    def _admin_secrets_where_administrators_are_served(self) -> "Settings":
        if self.serves != "verify":
            missing = [name.upper() for name in self.ADMIN_SECRETS if getattr(self, name) is None]
            if missing:
                raise ValueError(f"{', '.join(missing)} required unless SERVES=verify")
        return self

    @property
    def verify_dsn(self) -> str:
        return self.verify_database_url or self.database_url

    @property
    def relays(self) -> bool:
        return self.run_relay and self.serves != "verify"

    @property
    def uses_kafka(self) -> bool:
        return self.relays

    secret_fields: ClassVar[tuple[str, ...]] = (
        "service_tokens",
        "acting_admin_secret",
        "key_hmac_secrets",
        "key_encryption_keys",
    )

    @property
    def secrets_in_use(self) -> tuple[str, ...]:
        if self.serves == "verify":
            return tuple(name for name in self.secret_fields if name not in self.ADMIN_SECRETS)
        return self.secret_fields
