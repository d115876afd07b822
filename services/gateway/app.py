"""The gateway: app factory and what it runs. The upstream clients and the live stream start and stop here."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import asyncpg
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from services.gateway.auth import JwtVerifier
from services.gateway.config import Settings
from services.gateway.context import GatewayContext
from services.gateway.endpoints import router as api_router
from services.gateway.keys_client import KeysClient
from services.gateway.live_stream import LiveStream
from services.gateway.middleware import SecurityHeaders
from services.gateway.notifier_client import NotifierClient
from services.gateway.oidc import OpenIdProvider
from services.gateway.pages import SignInRequired
from services.gateway.pages import router as pages_router
from services.gateway.sessions import SessionStore
from services.gateway.sign_in import router as sign_in_router
from services.gateway.views import make_templates
from shared.app import service_app
from shared.db import create_pool
from shared.errors import ApiError, error_body
from shared.tasks import cancel_all

log = logging.getLogger(__name__)
# The lifespan's stop: the live stream's consumer, then the upstream clients.
SHUTDOWN_SECONDS = 5.0
PRUNE_SECONDS = 600
HERE = Path(__file__).parent


def _client(
    base_url: str, timeout: float, *, connections: int = 100, acquire_timeout: float | None = None
) -> httpx.AsyncClient:
    """`connections` at most; a call that gets none within `acquire_timeout` raises httpx.PoolTimeout."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0), pool=acquire_timeout or timeout),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=min(connections, 20)),
    )


@contextlib.asynccontextmanager
async def running(
    cfg: Settings,
    templates: Jinja2Templates,
    *,
    live_events: bool,
    provider_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[GatewayContext]:
    upstream_timeout, acquire_timeout = (
        cfg.upstream_timeout.total_seconds(),
        cfg.upstream_acquire_timeout.total_seconds(),
    )
    async with (
        _client(
            cfg.keys_url, upstream_timeout, connections=cfg.upstream_connections, acquire_timeout=acquire_timeout
        ) as keys_http,
        _client(
            cfg.keys_url, upstream_timeout, connections=cfg.export_connections, acquire_timeout=acquire_timeout
        ) as exports_http,
        _client(cfg.notifier_url, cfg.notifier_timeout.total_seconds()) as notifier_http,
        contextlib.AsyncExitStack() as stack,
    ):
        keys = KeysClient(keys_http, exports_http, cfg.keys_token, cfg.acting_admin_secret)
        ctx = GatewayContext(
            settings=cfg,
            keys=keys,
            notifier=NotifierClient(notifier_http, cfg.notifier_token),
            verifier=JwtVerifier(cfg),
            live=LiveStream(cfg.kafka, cfg.kafka_topic, client_id="gateway-live"),
            templates=templates,
        )
        tasks: list[asyncio.Task[None] | None] = []
        if cfg.auth_mode != "jwt":  # the console's sessions live in PostgreSQL
            ctx.pool = await create_pool(
                cfg.database_url,
                min_size=1,
                max_size=cfg.db_pool_size,
                acquire_timeout=cfg.db_acquire_timeout.total_seconds(),
            )
            stack.push_async_callback(ctx.pool.close)
            ctx.sessions = SessionStore(ctx.pool, cfg, keys.knows)
            tasks.append(asyncio.create_task(_prune(ctx.sessions), name="session-pruning"))
        if cfg.auth_mode == "oidc":
            assert ctx.pool is not None
            ctx.oidc = OpenIdProvider(cfg, ctx.pool, provider_transport)
        templates.env.globals["auth_mode"] = cfg.auth_mode
        if live_events:
            tasks.append(asyncio.create_task(ctx.live.run(), name="live-stream"))
        log.info("gateway ready on port %d (AUTH_MODE=%s)", cfg.port, cfg.auth_mode)
        try:
            yield ctx
        finally:
            await cancel_all(tasks, timeout=2.0)


async def _prune(sessions: SessionStore) -> None:
    """Drops ended sessions and abandoned sign-ins now and then (a live check never relies on it)."""
    while True:
        await asyncio.sleep(PRUNE_SECONDS)
        try:
            pruned = await sessions.prune()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("ended sessions could not be pruned: %s", exc)
        else:
            log.debug("%d ended session(s) pruned", pruned)


def create_app(
    settings: Settings | None = None,
    *,
    live_events: bool = True,
    provider_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """`live_events=False` runs without the Kafka consumer (for API tests that do not watch the stream);
    `provider_transport` carries the calls to the OpenID provider (tests wrap the real network)."""
    templates = make_templates()
    app = service_app(
        "gateway",
        "Keyward console gateway",
        lambda: settings or Settings(),  # type: ignore[call-arg]
        lambda cfg: running(cfg, templates, live_events=live_events, provider_transport=provider_transport),
        shutdown_seconds=SHUTDOWN_SECONDS,
        max_body_bytes=settings.max_body_bytes if settings else 64 * 1024,
        # The gateway is behind the Ingress: its metrics are for Prometheus, which scrapes the pod directly.
        metrics_through_proxies=False,
    )
    _install_page_errors(app, templates)
    app.include_router(api_router)
    app.include_router(pages_router)
    app.include_router(sign_in_router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(SecurityHeaders, form_targets=_provider_origin(settings))
    return app


def _provider_origin(settings: Settings | None) -> tuple[str, ...]:
    if settings is None or settings.auth_mode != "oidc" or not settings.oidc_issuer:
        return ()
    issuer = urlsplit(settings.oidc_issuer)
    return (f"{issuer.scheme}://{issuer.netloc}",)


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def _install_page_errors(app: FastAPI, templates: Jinja2Templates) -> None:
    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(f"/sign-in?next={quote(exc.next_path)}", status_code=303)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        body = error_body(exc.status, exc.message, exc.code, exc.fields)
        if _wants_html(request):
            return templates.TemplateResponse(
                request,
                "error.html",
                {"error": body["error"], "status": exc.status},
                status_code=exc.status,
                headers=exc.headers,
            )
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)
