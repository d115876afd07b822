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
    # `jwt`: bearer JWTs only. `oidc`: also the console's sign-in through the OpenID provider. `dev`: also a
    # sign-in page listing the directory's administrators (a developer's machine only).
    auth_mode: Literal["dev", "jwt", "oidc"] = "jwt"
    auth_jwks_url: str | None = None
    auth_issuer: str | None = None
    auth_audience: str = "keyward-console"
    # A bearer JWT valid for longer than this (exp - iat) is refused: a leaked one is worth little for long.
    auth_max_token_lifetime: Duration = timedelta(hours=1)
    # The OpenID provider (AUTH_MODE=oidc): discovery at <issuer>/.well-known/openid-configuration.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_username_claim: str = "preferred_username"
    oidc_scopes: str = "openid profile email"
    # The console's address as browsers reach it (the provider's redirect and post-logout URIs are below it);
    # unset: taken from each request.
    console_url: str | None = None
    # The console's sessions, kept in PostgreSQL: they end after this long unused, and at the latest.
    session_idle_timeout: Duration = timedelta(minutes=30)
    session_max_age: Duration = timedelta(hours=12)
    # How often a session's administrator is looked up in the directory again (and a live stream checked).
    session_recheck_interval: Duration = timedelta(seconds=30)
    # None: Secure cookies everywhere but on a developer's machine (plain http on 127.0.0.1).
    session_cookie_secure: bool | None = None
    db_pool_size: int = Field(default=5, ge=1)
    upstream_timeout: Duration = timedelta(seconds=10)
    # Connections to the keys service: pages and API calls have `upstream_connections`, exports (streamed, as
    # slow as their reader) `export_connections` of their own, so that downloads never take what pages need. A
    # call that gets none within `upstream_acquire_timeout` is a 503 with Retry-After.
    upstream_connections: int = Field(default=50, ge=1)
    export_connections: int = Field(default=8, ge=1)
    upstream_acquire_timeout: Duration = timedelta(seconds=2)
    # An export whose reader takes nothing for `export_stall_timeout` is ended, and none lasts longer than
    # `export_deadline` (the keys service's settings of the same names bound its side).
    export_stall_timeout: Duration = timedelta(seconds=60)
    export_deadline: Duration = timedelta(minutes=10)
    notifier_timeout: Duration = timedelta(seconds=2)
    # A live-update stream is closed after this long; the browser reconnects and is authorized again.
    events_stream_lifetime: Duration = timedelta(minutes=5)
    max_body_bytes: int = 64 * 1024

    # Secrets: no defaults (AUTH_JWT_SECRET may stay unset when AUTH_JWKS_URL is used; OIDC_CLIENT_SECRET for a
    # public client).
    # Its own token at the keys service (the keys service's `gateway` entry of SERVICE_TOKENS).
    keys_token: str = Field(min_length=16)
    # Its token at the notifier (an entry of the notifier's NOTICES_TOKENS).
    notifier_token: str = Field(min_length=16)
    acting_admin_secret: str = Field(min_length=32)
    auth_jwt_secret: str | None = Field(default=None, min_length=32)
    oidc_client_secret: str | None = None

    secret_fields: ClassVar[tuple[str, ...]] = ("keys_token", "notifier_token", "acting_admin_secret")

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if not self.auth_jwt_secret and not self.auth_jwks_url:
            raise ValueError("set AUTH_JWT_SECRET (HS256) or AUTH_JWKS_URL (RS256) to check administrators' JWTs")
        if self.auth_mode == "oidc" and not (self.oidc_issuer and self.oidc_client_id):
            raise ValueError("AUTH_MODE=oidc needs OIDC_ISSUER and OIDC_CLIENT_ID")
        if "openid" not in self.oidc_scopes.split():
            raise ValueError("OIDC_SCOPES must include openid")
        if self.production:
            if self.auth_mode == "dev":
                raise ValueError(
                    f"AUTH_MODE=dev lets anyone sign in as anyone: it needs KEYWARD_ENV=dev, not "
                    f"KEYWARD_ENV={self.keyward_env}; use AUTH_MODE=oidc or jwt"
                )
            if not self.auth_issuer:
                raise ValueError(f"AUTH_ISSUER is required with KEYWARD_ENV={self.keyward_env}")
            for name in ("auth_jwt_secret", "oidc_client_secret"):
                secret = (getattr(self, name) or "").lower()
                if secret and any(marker in secret for marker in ("dev-", "changeme", "insecure")):
                    raise ValueError(f"{name.upper()} holds a development placeholder; set a real secret")
        return self

    @property
    def secure_cookies(self) -> bool:
        if self.session_cookie_secure is not None:
            return self.session_cookie_secure
        return self.production
