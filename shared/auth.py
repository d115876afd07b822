"""How services trust each other.

A calling service presents a bearer token from SERVICE_TOKENS (`name:token` pairs). When it acts for an
administrator (the gateway does), it also sends `X-Acting-Admin`: a short-lived HS256 JWT naming the
administrator, signed with ACTING_ADMIN_SECRET, whose `iss` must be the service that presented the token
and whose `aud` is the service called. A leaked service token alone therefore cannot act as anyone.
"""

import hashlib
import time
from dataclasses import dataclass

import jwt

ACTING_ADMIN_HEADER = "X-Acting-Admin"
ACTING_ADMIN_TTL_SECONDS = 60


def parse_service_tokens(value: str) -> dict[str, str]:
    """'gateway:abc,notifier:def' -> {'gateway': 'abc', 'notifier': 'def'}."""
    tokens: dict[str, str] = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, token = part.partition(":")
        if not sep or not name.strip() or len(token.strip()) < 16:
            raise ValueError("SERVICE_TOKENS must be name:token pairs with tokens of at least 16 characters")
        tokens[name.strip()] = token.strip()
    if not tokens:
        raise ValueError("SERVICE_TOKENS names no service")
    return tokens


class ServiceTokens:
    """Looks a presented token up by its SHA-256, so the check costs one hash whatever the number of tokens."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self._by_digest = {hashlib.sha256(t.encode()).digest(): name for name, t in tokens.items()}

    def service_for(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        digest = hashlib.sha256(authorization[7:].strip().encode()).digest()
        return self._by_digest.get(digest)


@dataclass(frozen=True, slots=True)
class ActingAdmin:
    username: str
    service: str


def sign_acting_admin(username: str, *, secret: str, issuer: str, audience: str) -> str:
    now = int(time.time())
    claims = {"sub": username, "iss": issuer, "aud": audience, "iat": now, "exp": now + ACTING_ADMIN_TTL_SECONDS}
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_acting_admin(token: str, *, secret: str, service: str, audience: str) -> ActingAdmin | None:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=audience,
            issuer=service,
            options={"require": ["sub", "iss", "aud", "exp", "iat"]},
            leeway=5,
        )
    except jwt.PyJWTError:
        return None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        return None
    return ActingAdmin(username=subject, service=service)
