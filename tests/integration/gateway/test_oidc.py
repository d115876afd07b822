"""AUTH_MODE=oidc against the real provider (Keycloak, deploy/local/keycloak.sh): the gateway in-process, the
provider's sign-in page driven over HTTP (tests/e2e drives it in Chromium). Every refusal starts no session.

The expired and other-audience ID tokens are real ones of the provider, reaching the gateway through a network
that is slow (the token endpoint's answer held past the token's life) or hostile (an ID token the provider
issued to another application of the platform, put in place of the console's)."""

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from secrets import token_urlsafe
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.gateway.app import create_app
from services.gateway.oidc import CLOCK_LEEWAY
from services.gateway.sessions import digest
from services.keys.config import Settings as KeysSettings
from tests.fixtures.directory import create_admin, create_org
from tests.fixtures.gateway import bearer, make_token
from tests.fixtures.keycloak import (
    CONSOLE,
    OTHER_APP,
    OUTSIDER,
    SHORT_LIVED,
    Keycloak,
    ProviderBrowser,
    id_token_for,
    path_and_query,
    query,
)
from tests.fixtures.processes import ROOT, ServiceProcess
from tests.integration.conftest import World
from tests.integration.gateway.conftest import gateway_settings

# Where the console says it is: the provider sends browsers back below it (here the tests carry them over).
CONSOLE_URL = "http://127.0.0.1:8999"
COOKIE = "kw_session"


class ProviderNetwork(httpx.AsyncBaseTransport):
    """The network between the gateway and the provider: real, unless a test slows down or swaps the token
    endpoint's answer."""

    def __init__(self) -> None:
        self.hold_token_answer = 0.0
        self.id_token_instead: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            real = await client.send(
                httpx.Request(request.method, request.url, headers=request.headers, content=await request.aread())
            )
        body = real.content
        if request.url.path.endswith("/protocol/openid-connect/token"):
            await asyncio.sleep(self.hold_token_answer)
            if self.id_token_instead is not None and real.status_code == 200:
                body = json.dumps(json.loads(body) | {"id_token": self.id_token_instead}).encode()
        headers = [(k, v) for k, v in real.headers.items() if k not in ("content-encoding", "content-length")]
        return httpx.Response(real.status_code, headers=headers, content=body)


@pytest.fixture(scope="session")
async def directory(pool: asyncpg.Pool, world: World) -> None:
    """The provider's users that the console knows, in this run's directory (the outsider stays unknown)."""
    async with pool.acquire() as conn:
        await create_admin(conn, world.root_id, level="system", name="admin")  # type: ignore[arg-type]
        for tenant, users in {"Acme": ["acme-admin", "acme-ops"], "Globex": ["globex-admin"]}.items():
            org = await create_org(conn, world.root_id, f"{tenant} {world.system_admin}")  # type: ignore[arg-type]
            for user in users:
                await create_admin(conn, org["id"], name=user)


Console = Callable[[], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@contextlib.asynccontextmanager
async def _oidc_gateway(
    keycloak: Keycloak,
    settings: KeysSettings,
    keys_url: str,
    network: ProviderNetwork,
    client: tuple[str, str] = CONSOLE,
    **overrides: Any,
) -> AsyncIterator[Console]:
    values = {k.lower(): v for k, v in keycloak.oidc_env(client).items()}
    app = create_app(
        gateway_settings(settings, keys_url, console_url=CONSOLE_URL, **values, **overrides),
        live_events=False,
        provider_transport=network,
    )
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]

        def browser() -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
            """A browser of its own (its own cookies) at this console."""
            return httpx.AsyncClient(transport=transport, base_url="http://gateway")

        yield browser


@pytest.fixture(scope="session")
def network() -> ProviderNetwork:
    return ProviderNetwork()


@pytest.fixture(scope="session")
async def console(
    keycloak: Keycloak, settings: KeysSettings, keys_server: ServiceProcess, directory: None, network: ProviderNetwork
) -> AsyncIterator[Console]:
    async with _oidc_gateway(keycloak, settings, keys_server.url, network) as browser:
        yield browser


@pytest.fixture(autouse=True)
def honest_network(network: ProviderNetwork) -> None:
    network.hold_token_answer, network.id_token_instead = 0.0, None


async def start(browser: httpx.AsyncClient, next_path: str = "/keys", **params: str) -> str:
    """The console's sign-in: the provider's authorization URL it sends the browser to."""
    answer = await browser.get("/sign-in", params={"next": next_path, **params})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("http://127.0.0.1:"), answer.headers["location"]
    return answer.headers["location"]


async def sign_in(
    browser: httpx.AsyncClient, username: str, provider: ProviderBrowser | None = None, **params: str
) -> httpx.Response:
    back = await (provider or ProviderBrowser()).sign_in(await start(browser, **params), username)
    return await browser.get(path_and_query(back))


async def session_rows(pool: asyncpg.Pool, username: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM gateway.sessions WHERE username = $1", username))


async def test_an_administrator_signs_in_at_the_provider_and_the_session_lives_on_the_server(console, pool):
    async with console() as browser:
        provider_url = await start(browser, "/keys")
        request = query(provider_url)
        assert request["code_challenge_method"] == "S256" and request["code_challenge"]
        assert request["state"] and request["nonce"] and request["scope"] == "openid profile email"
        assert request["redirect_uri"] == f"{CONSOLE_URL}/auth/callback"
        back = await ProviderBrowser().sign_in(provider_url, "acme-admin")
        landed = await browser.get(path_and_query(back))
        assert landed.status_code == 303 and landed.headers["location"] == "/keys"
        session_id = browser.cookies[COOKIE]
        assert "HttpOnly" in landed.headers["set-cookie"] and "SameSite=Lax" in landed.headers["set-cookie"]
        assert (await browser.get("/api/v1/me")).json()["username"] == "acme-admin"
    stored = await pool.fetchrow(
        "SELECT username, id_token FROM gateway.sessions WHERE id_digest = $1", digest(session_id)
    )
    assert stored["username"] == "acme-admin" and stored["id_token"]
    assert await pool.fetchval("SELECT count(*) FROM gateway.sessions WHERE id_digest = $1", session_id.encode()) == 0


async def test_after_sign_in_the_browser_returns_to_the_page_it_asked_for_on_this_origin_only(console):
    for asked, lands in [
        ("/keys?q=x", "/keys?q=x"),
        ("//evil.example", "/keys"),
        ("https://evil.example", "/keys"),
        ("/\\evil.example", "/keys"),
    ]:
        async with console() as browser:
            back = await ProviderBrowser().sign_in(await start(browser, asked), "acme-admin")
            assert (await browser.get(path_and_query(back))).headers["location"] == lands


async def test_a_tampered_state_is_refused_with_a_clear_page_and_no_session(console, pool):
    before = await session_rows(pool, "globex-admin")
    async with console() as browser:
        back = await ProviderBrowser().sign_in(await start(browser), "globex-admin")
        tampered = path_and_query(back).replace(f"state={query(back)['state']}", "state=forged-by-someone-else")
        answer = await browser.get(tampered)
        assert answer.status_code == 400 and "Sign-in refused" in answer.text and "state differs" in answer.text
        assert COOKIE not in browser.cookies
        assert (await browser.get("/api/v1/me")).status_code == 401
    assert await session_rows(pool, "globex-admin") == before


async def test_a_replayed_authorization_code_is_refused_and_starts_no_session(console, pool):
    async with console() as browser, console() as attacker:
        back = await ProviderBrowser().sign_in(await start(browser), "acme-admin")
        assert (await browser.get(path_and_query(back))).status_code == 303
        first = browser.cookies[COOKIE]
        again = await browser.get(path_and_query(back))
        assert again.status_code == 400 and "used already" in again.text
        assert browser.cookies[COOKIE] == first  # the refusal leaves the session it had alone
        # Elsewhere, with a sign-in of its own under way: its state, the stolen code.
        own = query(await start(attacker))
        stolen = path_and_query(back).replace(f"state={query(back)['state']}", f"state={own['state']}")
        replayed = await attacker.get(stolen)
        assert replayed.status_code == 400 and "provider refused the sign-in" in replayed.text
        assert COOKIE not in attacker.cookies and (await attacker.get("/api/v1/me")).status_code == 401


async def test_an_id_token_with_another_nonce_is_refused(console):
    async with console() as browser:
        provider_url = await start(browser)
        swapped = provider_url.replace(f"nonce={query(provider_url)['nonce']}", "nonce=another-sign-ins-nonce")
        back = await ProviderBrowser().sign_in(swapped, "acme-admin")
        answer = await browser.get(path_and_query(back))
        assert answer.status_code == 400 and "nonce differs" in answer.text
        assert COOKIE not in browser.cookies


async def test_an_id_token_for_another_audience_is_refused(console, keycloak, network):
    async with console() as browser:
        provider_url = await start(browser)
        nonce = query(provider_url)["nonce"]
        # The same user, the same nonce, the same provider: but issued to another application of the platform.
        other = await id_token_for(keycloak, OTHER_APP, "acme-admin", nonce=nonce, redirect_uri=f"{CONSOLE_URL}/x")
        network.id_token_instead = other["id_token"]
        back = await ProviderBrowser().sign_in(provider_url, "acme-admin")
        answer = await browser.get(path_and_query(back))
        assert answer.status_code == 400 and "issued to another application" in answer.text
        assert COOKIE not in browser.cookies


@pytest.mark.slow
async def test_an_expired_id_token_is_refused(keycloak, settings, keys_server, directory):
    """The provider's client `keyward-console-short` issues ID tokens valid one second; its answer is held past
    that and the clock leeway."""
    slow = ProviderNetwork()
    slow.hold_token_answer = CLOCK_LEEWAY + 2
    gateway = _oidc_gateway(keycloak, settings, keys_server.url, slow, client=SHORT_LIVED)
    async with gateway as short_console, short_console() as browser:
        answer = await sign_in(browser, "acme-admin")
        assert answer.status_code == 400 and "ID token has expired" in answer.text
        assert COOKIE not in browser.cookies


async def test_a_provider_user_the_directory_does_not_know_gets_a_clear_page_and_no_session(console, pool):
    async with console() as browser:
        answer = await sign_in(browser, OUTSIDER)
        assert answer.status_code == 403
        assert f"signed in as <strong>{OUTSIDER}</strong>, who is not an administrator of this console" in answer.text
        assert not browser.cookies.get(COOKIE)
        assert (await browser.get("/api/v1/me")).status_code == 401
    assert await session_rows(pool, OUTSIDER) == 0


async def test_sign_out_ends_the_session_for_every_copy_of_the_cookie_and_at_the_provider(console, keycloak):
    provider = ProviderBrowser()
    async with console() as browser, console() as copy:
        await sign_in(browser, "acme-admin", provider)
        copy.cookies.set(COOKIE, browser.cookies[COOKIE], domain="gateway.local")
        assert (await copy.get("/api/v1/me")).status_code == 200
        page = await browser.get("/keys")
        csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        out = await browser.post("/sign-out", data={"csrf_token": csrf})
        assert out.status_code == 303
        logout = out.headers["location"]
        assert logout.startswith(f"{keycloak.issuer}/protocol/openid-connect/logout?")
        assert (
            query(logout)["post_logout_redirect_uri"] == f"{CONSOLE_URL}/signed-out" and query(logout)["id_token_hint"]
        )
        # The copied cookie, replayed from outside the browser: no answer from the API, no page.
        assert (await copy.get("/api/v1/me")).status_code == 401
        assert (await copy.get("/keys")).headers["location"].startswith("/sign-in")
        # The browser follows on to the provider, which ends its own session and sends it back.
        async with provider.client() as at_provider:
            back = await at_provider.get(logout)
        assert back.status_code == 302 and back.headers["location"].startswith(f"{CONSOLE_URL}/signed-out")
        assert await provider.shows_login_form(await start(browser))


async def test_a_session_id_set_before_sign_in_is_never_the_one_after_it(console, pool):
    provider = ProviderBrowser()
    async with console() as browser:
        browser.cookies.set(COOKIE, "planted-by-someone-else-0123456789", domain="gateway.local")
        await sign_in(browser, "acme-admin", provider)
        first = browser.cookies[COOKIE]
        assert first != "planted-by-someone-else-0123456789"
        await sign_in(browser, "acme-admin", provider, account="choose")  # signed in already: afresh
        second = browser.cookies[COOKIE]
        assert second != first
    assert await pool.fetchval("SELECT count(*) FROM gateway.sessions WHERE id_digest = $1", digest(first)) == 0


async def test_bearer_calls_keep_working_in_oidc_mode_and_long_lived_tokens_are_refused(console):
    async with console() as script:
        assert (await script.get("/api/v1/me", headers=bearer("acme-admin"))).status_code == 200
        long_lived = make_token("acme-admin", exp=int(time.time()) + 7200)
        assert (await script.get("/api/v1/me", headers={"Authorization": f"Bearer {long_lived}"})).status_code == 401


@pytest.mark.slow
async def test_an_administrator_removed_from_the_directory_loses_the_console_and_the_live_stream(
    keycloak, settings, keys_server, directory, pool
):
    async with (
        _oidc_gateway(
            keycloak, settings, keys_server.url, ProviderNetwork(), session_recheck_interval="1s"
        ) as quick_console,
        quick_console() as browser,
    ):
        await sign_in(browser, "acme-ops")
        assert (await browser.get("/api/v1/me")).status_code == 200
        stream = asyncio.create_task(browser.get("/api/v1/events", timeout=60))
        await asyncio.sleep(1.5)
        assert not stream.done()
        await pool.execute("DELETE FROM keys.administrators WHERE username = 'acme-ops'")
        ended = await asyncio.wait_for(stream, 15)  # the ASGI transport answers once the stream has ended
        assert ended.status_code == 200 and "event: ready" in ended.text
        assert (await browser.get("/api/v1/me")).status_code == 401
        assert (await browser.get("/keys")).headers["location"].startswith("/sign-in")
    assert await session_rows(pool, "acme-ops") == 0


def test_the_gateway_refuses_to_start_with_dev_sign_in_outside_keyward_env_dev():
    # Everything else as production wants it: the refusal is for the sign-in mode, and says so.
    secrets = {name: token_urlsafe(32) for name in ("ACTING_ADMIN_SECRET", "AUTH_JWT_SECRET", "KEYS_TOKEN")}
    secrets |= {"NOTIFIER_TOKEN": token_urlsafe(32), "SERVICE_TOKENS": f"gateway:{token_urlsafe(32)}"}
    secrets |= {"KAFKA_USERNAME": "keyward-gateway-kafka", "KAFKA_PASSWORD": token_urlsafe(32)}
    env = {"PATH": "/usr/bin:/bin", "KEYWARD_ENV": "staging", "AUTH_MODE": "dev", "AUTH_ISSUER": "https://sso.test"}
    env |= secrets
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "AUTH_MODE=dev" in result.stderr and "KEYWARD_ENV=staging" in result.stderr, result.stderr[-2000:]
