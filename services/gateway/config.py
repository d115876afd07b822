"""The gateway's settings: where the keys service and the notifier answer, how administrators sign in, sessions."""

from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from shared.durations import Duration
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    port: int = 8080
    keys_url: str = "http://127.0.0.1:8081"
    notifier_url: str = "http://127.0.0.1:8082"
    # `jwt`: bearer JWTs only. `dev`: also a sign-in page listing the directory's administrators.
    auth_mode: Literal["dev", "jwt"] = "jwt"
    auth_jwks_url: str | None = None
    auth_issuer: str | None = None
    auth_audience: str = "keyward-console"
    # The console's session cookie: refreshed while in use, never older than session_max_age.
    session_idle_timeout: Duration = timedelta(minutes=30)
    session_max_age: Duration = timedelta(hours=12)
    # None: Secure cookies everywhere but on a developer's machine (plain http on 127.0.0.1).
    session_cookie_secure: bool | None = None
    upstream_timeout: Duration = timedelta(seconds=10)
    notifier_timeout: Duration = timedelta(seconds=2)
    # A live-update stream is closed after this long; the browser reconnects and is authorized again.
    events_stream_lifetime: Duration = timedelta(minutes=5)
    max_body_bytes: int = 64 * 1024

    # Secrets: no defaults (AUTH_JWT_SECRET may stay unset when AUTH_JWKS_URL is used).
    service_tokens: str
    acting_admin_secret: str = Field(min_length=32)
    session_secret: str = Field(min_length=32)
    auth_jwt_secret: str | None = Field(default=None, min_length=32)

    secret_fields: ClassVar[tuple[str, ...]] = ("service_tokens", "acting_admin_secret", "session_secret")

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if not self.auth_jwt_secret and not self.auth_jwks_url:
            raise ValueError("set AUTH_JWT_SECRET (HS256) or AUTH_JWKS_URL (RS256) to check administrators' JWTs")
        if self.keyward_env == "prod":
            if self.auth_mode == "dev":
                raise ValueError("AUTH_MODE=dev lets anyone sign in as anyone; it is refused with KEYWARD_ENV=prod")
            secret = (self.auth_jwt_secret or "").lower()
            if secret and any(marker in secret for marker in ("dev-", "changeme", "insecure")):
                raise ValueError("AUTH_JWT_SECRET holds a development placeholder; set a real secret")
        return self

    @property
    def secure_cookies(self) -> bool:
        if self.session_cookie_secure is not None:
            return self.session_cookie_secure
        return self.keyward_env == "prod"
