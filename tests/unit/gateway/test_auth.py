import dataclasses
import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from services.gateway.auth import JwtVerifier, Sessions, tokens_match
from services.gateway.config import Settings

SECRET = "unit-jwt-secret-0123456789abcdef0123456789"


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "keyward_env": "test",
        "service_tokens": "gateway:unit-gateway-token-00000000",
        "acting_admin_secret": "a" * 32,
        "session_secret": "s" * 32,
        "auth_jwt_secret": SECRET,
        "auth_issuer": "https://idp.test",
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


async def test_an_hs256_token_with_the_right_issuer_and_audience_names_its_subject():
    token = jwt.encode(
        {"sub": "ada", "iss": "https://idp.test", "aud": "keyward-console", "exp": time.time() + 60},
        SECRET,
        algorithm="HS256",
    )
    assert await JwtVerifier(settings()).username(token) == "ada"


async def test_a_token_without_the_configured_issuer_is_refused():
    token = jwt.encode({"sub": "ada", "aud": "keyward-console", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    assert await JwtVerifier(settings()).username(token) is None


async def test_an_asymmetric_token_is_refused_when_no_jwks_is_configured():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"sub": "ada", "iss": "https://idp.test", "aud": "keyward-console", "exp": time.time() + 60}
    token = jwt.encode(claims, private, algorithm="RS256")
    assert await JwtVerifier(settings()).username(token) is None


def test_a_session_round_trips_and_keeps_its_csrf_token_when_renewed():
    sessions = Sessions(settings())
    session = sessions.read(sessions.issue("ada"))
    assert session is not None and session.username == "ada"
    assert sessions.renewed(session) is None  # fresh: nothing to renew yet
    aged = sessions.read(sessions.issue("ada", csrf=session.csrf, started_at=int(time.time()) - 600))
    assert aged is not None
    old = dataclasses.replace(aged, issued_at=aged.issued_at - 900)
    renewed = sessions.read(sessions.renewed(old))  # type: ignore[arg-type]
    assert renewed is not None and renewed.csrf == session.csrf and renewed.started_at == aged.started_at


def test_a_session_never_outlives_its_maximum_age():
    sessions = Sessions(settings(session_max_age=timedelta(hours=1)))
    started = int(time.time()) - 3600 - 5
    assert sessions.read(sessions.issue("ada", started_at=started)) is None


def test_a_session_signed_with_another_secret_is_refused():
    other = Sessions(settings(session_secret="x" * 32))
    assert Sessions(settings()).read(other.issue("ada")) is None


def test_the_cookie_is_http_only_same_site_and_secure_outside_development():
    assert "HttpOnly" in Sessions(settings()).cookie("v") and "SameSite=Lax" in Sessions(settings()).cookie("v")
    assert "Secure" not in Sessions(settings()).cookie("v")
    secure = Sessions(settings(session_cookie_secure=True))
    assert secure.cookie("v").startswith("__Host-kw_session=v") and "Secure" in secure.cookie("v")


def test_tokens_match_only_when_both_are_present_and_equal():
    assert tokens_match("abc", "abc")
    assert not tokens_match("abc", "abd")
    assert not tokens_match(None, None)
    assert not tokens_match("", "")


def test_development_sign_in_and_placeholder_secrets_are_refused_in_production(monkeypatch):
    monkeypatch.delenv("AUTH_MODE", raising=False)
    prod = {
        "keyward_env": "prod",
        "service_tokens": "gateway:real-token-0123456789abcdef",
        "acting_admin_secret": "r" * 32,
        "session_secret": "q" * 32,
        "auth_jwt_secret": "p" * 32,
    }
    assert Settings(**prod).auth_mode == "jwt"  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="AUTH_MODE=dev"):
        Settings(**prod, auth_mode="dev")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="AUTH_JWT_SECRET"):
        Settings(**(prod | {"auth_jwt_secret": "dev-" + "p" * 32}))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="AUTH_JWKS_URL"):
        Settings(**(prod | {"auth_jwt_secret": None}))  # type: ignore[arg-type]
