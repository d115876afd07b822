import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from services.gateway.auth import JwtVerifier, tokens_match
from services.gateway.config import Settings
from services.gateway.sessions import SessionStore, digest
from services.gateway.sign_in import safe_next

SECRET = "unit-jwt-secret-0123456789abcdef0123456789"


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "keyward_env": "test",
        "auth_mode": "jwt",
        "keys_token": "unit-gateway-token-00000000",
        "notifier_token": "unit-gateway-notices-token-0000",
        "acting_admin_secret": "a" * 32,
        "auth_jwt_secret": SECRET,
        "auth_issuer": "https://idp.test",
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


async def test_an_hs256_token_with_the_right_issuer_and_audience_names_its_subject():
    token = jwt.encode(
        {
            "sub": "ada",
            "iss": "https://idp.test",
            "aud": "keyward-console",
            "iat": time.time(),
            "exp": time.time() + 60,
        },
        SECRET,
        algorithm="HS256",
    )
    assert await JwtVerifier(settings()).username(token) == "ada"


async def test_a_token_without_the_configured_issuer_is_refused():
    claims = {"sub": "ada", "aud": "keyward-console", "iat": time.time(), "exp": time.time() + 60}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert await JwtVerifier(settings()).username(token) is None


async def test_an_asymmetric_token_is_refused_when_no_jwks_is_configured():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"sub": "ada", "iss": "https://idp.test", "aud": "keyward-console", "exp": time.time() + 60}
    token = jwt.encode(claims, private, algorithm="RS256")
    assert await JwtVerifier(settings()).username(token) is None


def test_the_cookie_carries_only_the_id_http_only_same_site_and_secure_outside_development():
    cookie = SessionStore(None, settings(session_cookie_secure=False), _unused).cookie("v")  # type: ignore[arg-type]
    assert cookie.startswith("kw_session=v;") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    secure = SessionStore(None, settings(), _unused).cookie("v")  # type: ignore[arg-type]
    assert secure.startswith("__Host-kw_session=v;") and "Secure" in secure and "Path=/" in secure


async def _unused(username: str) -> bool:
    raise AssertionError("no directory lookup here")


def test_session_ids_are_stored_as_digests():
    assert digest("abc") == digest("abc") != digest("abd") and len(digest("abc")) == 32


def test_tokens_match_only_when_both_are_present_and_equal():
    assert tokens_match("abc", "abc")
    assert not tokens_match("abc", "abd")
    assert not tokens_match(None, None)
    assert not tokens_match("", "")


def test_development_sign_in_and_placeholder_secrets_are_refused_in_production(monkeypatch):
    monkeypatch.delenv("AUTH_MODE", raising=False)
    prod = {
        "keyward_env": "prod",
        "keys_token": "real-token-0123456789abcdef",
        "notifier_token": "real-notices-token-0123456789ab",
        "acting_admin_secret": "r" * 32,
        "auth_jwt_secret": "p" * 32,
    }
    assert Settings(**prod).auth_mode == "jwt"  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="AUTH_MODE=dev"):
        Settings(**prod, auth_mode="dev")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="AUTH_JWT_SECRET"):
        Settings(**(prod | {"auth_jwt_secret": "dev-" + "p" * 32}))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="AUTH_JWKS_URL"):
        Settings(**(prod | {"auth_jwt_secret": None}))  # type: ignore[arg-type]


def _token(**claims: object) -> str:
    now = time.time()
    body = {"sub": "ada", "iss": "https://idp.test", "aud": "keyward-console", "iat": now, "exp": now + 60} | claims
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")


async def test_a_token_living_longer_than_the_maximum_lifetime_is_refused_however_fresh():
    now = time.time()
    verifier = JwtVerifier(settings())
    assert await verifier.username(_token(exp=now + 3600)) == "ada"
    assert await verifier.username(_token(exp=now + 3601)) is None
    shorter = JwtVerifier(settings(auth_max_token_lifetime=timedelta(minutes=5)))
    assert await shorter.username(_token(exp=now + 301)) is None


async def test_a_token_without_iat_is_refused_outside_development_only():
    assert await JwtVerifier(settings()).username(_token(iat=None)) is None
    assert await JwtVerifier(settings(keyward_env="dev")).username(_token(iat=None)) == "ada"


@pytest.mark.parametrize("env", ["staging", "prod", "test", "production"])
def test_development_sign_in_is_refused_outside_keyward_env_dev_naming_both_variables(env):
    with pytest.raises(ValidationError) as refused:
        settings(keyward_env=env, auth_mode="dev")
    assert "AUTH_MODE=dev" in str(refused.value) and f"KEYWARD_ENV={env}" in str(refused.value)
    assert settings(keyward_env="dev", auth_mode="dev").auth_mode == "dev"


def test_every_keyward_env_but_dev_takes_production_rules():
    assert settings(keyward_env="staging").secure_cookies
    assert not settings(keyward_env="dev").secure_cookies
    with pytest.raises(ValidationError, match="AUTH_ISSUER"):
        settings(keyward_env="staging", auth_issuer=None)
    assert settings(keyward_env="dev", auth_issuer=None).auth_issuer is None


def test_oidc_needs_its_issuer_and_client_and_refuses_a_placeholder_client_secret():
    with pytest.raises(ValidationError, match="OIDC_ISSUER and OIDC_CLIENT_ID"):
        settings(auth_mode="oidc")
    oidc = {"auth_mode": "oidc", "oidc_issuer": "https://sso.test/realms/x", "oidc_client_id": "keyward-console"}
    assert settings(**oidc).oidc_scopes == "openid profile email"
    with pytest.raises(ValidationError, match="OIDC_CLIENT_SECRET"):
        settings(**oidc, oidc_client_secret="dev-client-secret-000000")
    with pytest.raises(ValidationError, match="OIDC_SCOPES"):
        settings(**oidc, oidc_scopes="profile email")


@pytest.mark.parametrize(
    "asked",
    [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "\\evil.example",
        "evil.example",
        "/sign-in?next=//evil.example",
        "",
        None,
    ],
)
def test_after_sign_in_only_a_path_on_this_origin_is_followed(asked):
    assert safe_next(asked) == "/keys"


def test_after_sign_in_the_page_asked_for_is_followed():
    assert (
        safe_next("/keys/0b7c1f9e-8a55-4c1d-9a0e-3f1d2b6c7a88?x=1") == "/keys/0b7c1f9e-8a55-4c1d-9a0e-3f1d2b6c7a88?x=1"
    )
