"""How services trust each other.

A calling service presents a bearer token from SERVICE_TOKENS (`name:token` pairs). When it acts for an
administrator (the gateway does), it also sends `X-Acting-Admin`: a short-lived HS256 JWT naming the
administrator, signed with ACTING_ADMIN_SECRET, whose `iss` must be the service that presented the token,
whose `aud` is the service called, bound to the request's method and path and used once (`jti`). A leaked
service token alone therefore cannot act as anyone, and a captured claim cannot be used again.
"""

import hashlib
import time
import uuid
from dataclasses import dataclass

import jwt

ACTING_ADMIN_HEADER = "X-Acting-Admin"
ACTING_ADMIN_TTL_SECONDS = 60


def parse_service_tokens(value: str, *, variable: str = "SERVICE_TOKENS") -> dict[str, str]:
    """'gateway:abc,notifier:def' -> {'gateway': 'abc', 'notifier': 'def'}; errors name `variable`, never a token."""
    tokens: dict[str, str] = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, token = part.partition(":")
        if not sep or not name.strip() or len(token.strip()) < 16:
            raise ValueError(f"{variable} must be name:token pairs with tokens of at least 16 characters")
        tokens[name.strip()] = token.strip()
    if not tokens:
        raise ValueError(f"{variable} names no service")
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
    # The claim's id: the called service accepts it once (a replay is refused).
    jti: str
    expires_at: int


def sign_acting_admin(username: str, *, secret: str, issuer: str, audience: str, method: str, path: str) -> str:
    """A claim for one request: `method` and `path` (no query) are signed in (`htm`, `htu`, as DPoP names
    them), and a random `jti` lets the called service refuse a second use."""
    now = int(time.time())
    claims = {
        "sub": username,
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + ACTING_ADMIN_TTL_SECONDS,
        "jti": uuid.uuid4().hex,
        "htm": method.upper(),
        "htu": path,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_acting_admin(
    token: str, *, secret: str, service: str, audience: str, method: str, path: str
) -> ActingAdmin | None:
    """The claim if it is signed, current, from `service` for `audience`, and for this `method` and `path`."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=audience,
            issuer=service,
            options={"require": ["sub", "iss", "aud", "exp", "iat", "jti", "htm", "htu"]},
            leeway=5,
        )
    except jwt.PyJWTError:
        return None
    subject, jti = claims.get("sub"), claims.get("jti")
    if not isinstance(subject, str) or not subject or not isinstance(jti, str) or not jti:
        return None
    if claims.get("htm") != method.upper() or claims.get("htu") != path:
        return None
    return ActingAdmin(username=subject, service=service, jti=jti, expires_at=int(claims["exp"]))
