"""Who is calling: an administrator with a bearer JWT from the identity provider, or with a console session.

Sessions are HS256 JWTs in an HttpOnly cookie, renewed while in use and never older than SESSION_MAX_AGE.
Each carries a random CSRF token that the page echoes in `X-CSRF-Token` (or a form field) on every
state-changing request; bearer-authenticated calls need none, as a browser never adds them by itself.
"""

import asyncio
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from services.gateway.config import Settings

SESSION_AUDIENCE = "keyward-console-session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SIGN_IN_CSRF_COOKIE = "kw_sign_in"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A session is re-issued once this much of its idle timeout has passed, so active pages never expire.
RENEW_AFTER_FRACTION = 0.25


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    via: Literal["bearer", "session"]
    csrf: str | None = None
    # When a console session ends (epoch seconds); None for bearer tokens.
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class Session:
    username: str
    csrf: str
    issued_at: int
    started_at: int
    expires_at: int


class JwtVerifier:
    """Checks an identity provider's JWT: HS256 with AUTH_JWT_SECRET, or RS256/ES256 through AUTH_JWKS_URL."""

    ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")

    def __init__(self, settings: Settings) -> None:
        self.secret = settings.auth_jwt_secret
        self.issuer = settings.auth_issuer
        self.audience = settings.auth_audience
        self.jwks = jwt.PyJWKClient(settings.auth_jwks_url, lifespan=300, timeout=5) if settings.auth_jwks_url else None

    async def username(self, token: str) -> str | None:
        try:
            alg = jwt.get_unverified_header(token).get("alg")
            if alg == "HS256" and self.secret:
                key: Any = self.secret
            elif alg in self.ASYMMETRIC and self.jwks is not None:
                # PyJWKClient fetches over urllib (blocking) and caches the key set; keep it off the loop.
                key = (await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)).key
            else:
                return None
            required = ["sub", "exp", "aud"] + (["iss"] if self.issuer else [])
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": required},
                leeway=30,
            )
        except jwt.PyJWTError:
            return None
        subject = claims.get("sub")
        return subject if isinstance(subject, str) and 0 < len(subject) <= 64 else None


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self.secret = settings.session_secret
        self.idle = int(settings.session_idle_timeout.total_seconds())
        self.max_age = int(settings.session_max_age.total_seconds())
        self.secure = settings.secure_cookies
        # The __Host- prefix pins the cookie to this host and path, but browsers only take it over https.
        self.cookie_name = "__Host-kw_session" if self.secure else "kw_session"

    def issue(self, username: str, *, csrf: str | None = None, started_at: int | None = None) -> str:
        now = int(time.time())
        started = started_at or now
        claims = {
            "sub": username,
            "aud": SESSION_AUDIENCE,
            "csrf": csrf or secrets.token_urlsafe(32),
            "iat": now,
            "sat": started,
            "exp": min(now + self.idle, started + self.max_age),
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def read(self, token: str | None) -> Session | None:
        if not token:
            return None
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                audience=SESSION_AUDIENCE,
                options={"require": ["sub", "exp", "iat", "sat", "csrf"]},
            )
        except jwt.PyJWTError:
            return None
        return Session(
            str(claims["sub"]), str(claims["csrf"]), int(claims["iat"]), int(claims["sat"]), int(claims["exp"])
        )

    def renewed(self, session: Session) -> str | None:
        """A fresh cookie value when the session is due for renewal, else None."""
        now = int(time.time())
        if now - session.issued_at < self.idle * RENEW_AFTER_FRACTION or now >= session.started_at + self.max_age:
            return None
        return self.issue(session.username, csrf=session.csrf, started_at=session.started_at)

    def cookie(self, value: str, max_age: int | None = None) -> str:
        """A Set-Cookie header value: HttpOnly, SameSite=Lax (links from e-mails still open the console)."""
        parts = [f"{self.cookie_name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
        parts.append(f"Max-Age={self.idle if max_age is None else max_age}")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def cleared(self) -> str:
        return self.cookie("", max_age=0)


def tokens_match(expected: str | None, presented: str | None) -> bool:
    return bool(expected and presented) and hmac.compare_digest(str(expected), str(presented))
