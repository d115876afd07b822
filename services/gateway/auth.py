"""Who is calling: an administrator with a bearer JWT from the identity provider, or with a console session
(services/gateway/sessions.py). A session's CSRF token is echoed in `X-CSRF-Token` (or a form field) on every
state-changing request; bearer-authenticated calls need none, as a browser never adds them by itself.
"""

import asyncio
import hmac
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from services.gateway.config import Settings

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SIGN_IN_CSRF_COOKIE = "kw_sign_in"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    via: Literal["bearer", "session"]
    csrf: str | None = None
    # When a console session ends unless used again, or a bearer token expires (epoch seconds).
    expires_at: float | None = None
    # The console session's key (sessions.digest of its id); None for bearer tokens.
    session: bytes | None = None


class JwtVerifier:
    """Checks an identity provider's JWT: HS256 with AUTH_JWT_SECRET, or RS256/ES256 through AUTH_JWKS_URL."""

    ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")

    def __init__(self, settings: Settings) -> None:
        self.secret = settings.auth_jwt_secret
        self.issuer = settings.auth_issuer
        self.audience = settings.auth_audience
        self.max_lifetime = settings.auth_max_token_lifetime.total_seconds()
        # Outside a developer's machine a token must say when it was issued, so that its lifetime is known.
        self.required = ["sub", "exp", "aud"] + (["iat"] if settings.production else [])
        self.jwks = jwt.PyJWKClient(settings.auth_jwks_url, lifespan=300, timeout=5) if settings.auth_jwks_url else None

    async def username(self, token: str) -> str | None:
        claims = await self.claims(token)
        return claims["sub"] if claims else None

    async def claims(self, token: str) -> dict[str, Any] | None:
        """The token's claims when it checks out (and names a username), else None."""
        try:
            alg = jwt.get_unverified_header(token).get("alg")
            if alg == "HS256" and self.secret:
                key: Any = self.secret
            elif alg in self.ASYMMETRIC and self.jwks is not None:
                # PyJWKClient fetches over urllib (blocking) and caches the key set; keep it off the loop.
                key = (await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)).key
            else:
                return None
            required = self.required + (["iss"] if self.issuer else [])
            claims: dict[str, Any] = jwt.decode(
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
        if not isinstance(subject, str) or not 0 < len(subject) <= 64:
            return None
        issued_at = claims.get("iat")
        if isinstance(issued_at, int | float) and claims["exp"] - issued_at > self.max_lifetime:
            return None  # longer-lived than AUTH_MAX_TOKEN_LIFETIME: refused, however fresh
        return claims


def tokens_match(expected: str | None, presented: str | None) -> bool:
    return bool(expected and presented) and hmac.compare_digest(str(expected), str(presented))
