"""The gateway in-process (ASGI) against the keys service as a real process, on this run's database and topic."""

import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.gateway.app import create_app
from services.gateway.config import Settings as GatewaySettings
from services.keys.config import Settings as KeysSettings
from tests.fixtures.gateway import gateway_env
from tests.fixtures.keycloak import keycloak_fixture  # noqa: F401 (the provider, for the AUTH_MODE=oidc tests)
from tests.fixtures.processes import ServiceProcess, kafka_login


@dataclass
class StubServer:
    """A tiny HTTP server on loopback standing in for an identity provider's JWKS or the notifier."""

    routes: dict[str, tuple[int, Any]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def stub() -> Iterator[StubServer]:
    server_state = StubServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server_state.requests.append((self.path, dict(self.headers)))
            status, body = server_state.routes.get(self.path, (404, {"error": {"code": "not_found"}}))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server_state
    server.shutdown()
    server.server_close()


def gateway_settings(keys: KeysSettings, keys_url: str, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {k.lower(): v for k, v in gateway_env(keys, keys_url).items()}
    values.update(kafka_login("gateway"))
    values.update(overrides)
    return GatewaySettings(**values, log_format="text")


GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(scope="session")
def make_gateway(settings: KeysSettings, keys_server: ServiceProcess) -> GatewayFactory:
    """`async with make_gateway(**settings) as client:` a gateway app of its own, for unusual settings."""

    @contextlib.asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        keys_url = overrides.pop("keys_url", keys_server.url)
        transport = overrides.pop("provider_transport", None)
        app = create_app(
            gateway_settings(settings, keys_url, **overrides), live_events=False, provider_transport=transport
        )
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                yield client

    return factory


@pytest.fixture(scope="session")
async def gateway(make_gateway: GatewayFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in dev mode, with a notifier URL where nothing answers."""
    async with make_gateway() as client:
        yield client


SignIn = Callable[[str], contextlib.AbstractAsyncContextManager["Browser"]]


@dataclass
class Browser:
    """A client with the console's session cookie, as a browser has after the development sign-in."""

    client: httpx.AsyncClient
    csrf: str

    def with_csrf(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}


async def sign_in(client: httpx.AsyncClient, username: str) -> str:
    page = await client.get("/sign-in")
    assert page.status_code == 200, page.text
    form_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert form_token
    response = await client.post("/sign-in", data={"username": username, "csrf_token": form_token.group(1)})
    assert response.status_code == 303, response.text
    keys_page = await client.get("/keys")
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', keys_page.text)
    assert meta, keys_page.text[:500]
    return meta.group(1)


@pytest.fixture(scope="session")
def signed_in(settings: KeysSettings, keys_server: ServiceProcess, gateway: httpx.AsyncClient) -> SignIn:
    @contextlib.asynccontextmanager
    async def factory(username: str) -> AsyncIterator[Browser]:
        transport = gateway._transport  # the same in-process app, with a cookie jar of its own
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield Browser(client, await sign_in(client, username))

    return factory
