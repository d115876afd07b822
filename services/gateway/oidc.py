"""The console's sign-in at the platform's OpenID provider (AUTH_MODE=oidc): the authorization code flow with
PKCE (S256), state and nonce, through Authlib. Nothing of the protocol is written here: Authlib builds the
authorization request, exchanges the code and checks the ID token (signature from the provider's JWKS, fetched
again when a token names a key it has not seen: the provider's key rotation; iss, aud, exp, iat, nonce, azp).

What a sign-in under way needs at the callback (state, nonce, PKCE verifier, the page asked for) is kept in
PostgreSQL (`gateway.sign_ins`), under the digest of a random id that only the browser that started it holds
(a short-lived cookie), and is removed as the callback reads it: an answer is good once, in that browser only.
"""

import logging
import secrets
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import authlib.deprecate
import httpx
from joserfc.errors import ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError

from services.gateway import repository
from services.gateway.config import Settings
from services.gateway.sessions import digest

# Authlib asks for httpx2 and deprecates httpx, which it still supports; the rest of the gateway speaks httpx, and
# one HTTP client library is enough until the project moves as a whole. (authlib.deprecate, imported first,
# installs Authlib's own "always" filter, which the one here outranks.)
assert authlib.deprecate.AuthlibDeprecationWarning
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "The httpx module is deprecated", DeprecationWarning)
    from authlib.integrations.base_client import OAuthError
    from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App

log = logging.getLogger(__name__)

# How long a browser may take at the provider's sign-in page.
SIGN_IN_SECONDS = 600
SIGN_IN_COOKIE = "kw_oidc"
# Clock skew allowed between the provider and the gateway when checking exp and iat (seconds).
CLOCK_LEEWAY = 10
_WHY = {
    "aud": "the ID token was issued to another application",
    "azp": "the ID token was issued to another application",
    "iss": "the ID token comes from another issuer",
    "nonce": "the ID token does not belong to this sign-in (its nonce differs)",
}


class SignInRefused(Exception):
    """The provider's answer does not sign anyone in; the message says why, for the page."""


class ProviderUnavailable(Exception):
    """The provider did not answer (or answered with something that is not OpenID Connect)."""


@dataclass(frozen=True, slots=True)
class SignIn:
    """A sign-in under way, as the callback takes it back."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    next_path: str
    live: bool


@dataclass(frozen=True, slots=True)
class Identity:
    username: str
    id_token: str


class OpenIdProvider:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, transport: httpx.AsyncBaseTransport | None = None):
        """`transport`: how the provider is reached (tests wrap the real one to play a slow or hostile network)."""
        assert settings.oidc_issuer and settings.oidc_client_id
        self.pool = pool
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self.username_claim = settings.oidc_username_claim
        self.secure = settings.secure_cookies
        client_kwargs: dict[str, Any] = {
            "scope": settings.oidc_scopes,
            "code_challenge_method": "S256",
            "timeout": httpx.Timeout(settings.upstream_timeout.total_seconds()),
        }
        if not settings.oidc_client_secret:  # a public client: PKCE alone protects the code
            client_kwargs["token_endpoint_auth_method"] = "none"
        if transport is not None:
            client_kwargs["transport"] = transport
        self.client: StarletteOAuth2App = OAuth().register(
            "provider",
            client_id=self.client_id,
            client_secret=settings.oidc_client_secret,
            server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
            client_kwargs=client_kwargs,
        )

    @property
    def cookie_name(self) -> str:
        return f"__Host-{SIGN_IN_COOKIE}" if self.secure else SIGN_IN_COOKIE

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (fetched once, then kept)."""
        try:
            metadata: dict[str, Any] = await self.client.load_server_metadata()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("the OpenID provider's discovery document could not be read: %s", exc)
            raise ProviderUnavailable("the sign-in service is unavailable") from None
        if str(metadata.get("issuer", "")).rstrip("/") != self.issuer:
            self.client.server_metadata.clear()
            log.error("OIDC_ISSUER is %s but the provider says it is %s", self.issuer, metadata.get("issuer"))
            raise ProviderUnavailable("the sign-in service is misconfigured (its issuer differs)")
        return metadata

    async def begin(self, redirect_uri: str, next_path: str, *, prompt: str | None = None) -> tuple[str, str]:
        """Starts a sign-in: (the id for the browser's cookie, the provider's authorization URL)."""
        await self.metadata()
        extra = {"prompt": prompt} if prompt else {}
        try:
            request = await self.client.create_authorization_url(redirect_uri, **extra)
        except httpx.HTTPError:
            raise ProviderUnavailable("the sign-in service is unavailable") from None
        sign_in_id = secrets.token_urlsafe(32)
        await repository.create_sign_in(
            self.pool,
            digest(sign_in_id),
            state=request["state"],
            nonce=request["nonce"],
            code_verifier=request["code_verifier"],
            redirect_uri=redirect_uri,
            next_path=next_path,
            expires_at=datetime.now(UTC) + timedelta(seconds=SIGN_IN_SECONDS),
        )
        return sign_in_id, str(request["url"])

    async def take(self, sign_in_id: str | None) -> SignIn | None:
        """The sign-in this browser started, removed as it is read (None: none, or used already)."""
        if not sign_in_id or len(sign_in_id) > 128:
            return None
        row = await repository.take_sign_in(self.pool, digest(sign_in_id))
        return SignIn(**dict(row)) if row else None

    async def finish(self, sign_in: SignIn, code: str) -> Identity:
        """Exchanges the code (with the PKCE verifier) and checks the ID token; the identity it names."""
        try:
            token = await self.client.fetch_access_token(
                redirect_uri=sign_in.redirect_uri, code=code, code_verifier=sign_in.code_verifier
            )
        except OAuthError as exc:
            raise SignInRefused(f"the provider refused the sign-in ({exc.error})") from None
        except (httpx.HTTPError, ValueError) as exc:  # no answer, or one that is not JSON
            log.warning("the OpenID provider's token endpoint failed: %s", exc)
            raise ProviderUnavailable("the sign-in service is unavailable") from None
        if "id_token" not in token:
            raise SignInRefused("the provider sent no ID token")
        try:
            claims = await self.client.parse_id_token(
                token,
                nonce=sign_in.nonce,
                # Authlib checks aud only when asked; iat must be there (ESSENTIAL_CLAIMS) and not in the future.
                claims_options={
                    "iss": {"essential": True, "value": self.issuer},
                    "aud": {"essential": True, "value": self.client_id},
                },
                leeway=CLOCK_LEEWAY,
            )
        except ExpiredTokenError:
            raise SignInRefused("the ID token has expired") from None
        except (InvalidClaimError, MissingClaimError) as exc:
            claim = str(getattr(exc, "claim", "") or "")
            raise SignInRefused(_WHY.get(claim, f"the ID token's {claim or 'claims'} did not check out")) from None
        except JoseError as exc:
            raise SignInRefused(f"the ID token did not check out ({exc.error})") from None
        except httpx.HTTPError:
            raise ProviderUnavailable("the sign-in service is unavailable") from None
        username = claims.get(self.username_claim)
        if not isinstance(username, str) or not 0 < len(username) <= 64:
            raise SignInRefused(f"the ID token has no usable {self.username_claim} claim")
        return Identity(username, token["id_token"])

    async def logout_url(self, id_token: str | None, post_logout_redirect_uri: str) -> str | None:
        """The provider's end_session_endpoint for this session (RP-initiated logout), when it has one."""
        try:
            metadata = await self.metadata()
        except ProviderUnavailable:
            return None
        if not metadata.get("end_session_endpoint"):
            return None
        logout = await self.client.create_logout_url(
            post_logout_redirect_uri=post_logout_redirect_uri,
            id_token_hint=id_token,
            client_id=self.client_id,
        )
        return str(logout["url"])
