"""The gateway: app factory and lifespan. The upstream clients and the live-event consumer start and stop here."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from services.gateway.auth import JwtVerifier, Sessions
from services.gateway.config import Settings
from services.gateway.context import GatewayContext
from services.gateway.endpoints import router as api_router
from services.gateway.events import LiveEvents
from services.gateway.middleware import SecurityHeaders
from services.gateway.pages import SignInRequired
from services.gateway.pages import router as pages_router
from services.gateway.upstream import KeysService, Notifier
from services.gateway.views import make_templates
from shared.auth import parse_service_tokens
from shared.errors import ApiError, BodySizeLimit, error_body, install_error_handlers
from shared.heap import freeze_startup_heap
from shared.logging import configure_logging
from shared.observability import instrument, tcp_reachable
from shared.tasks import cancel_all

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def _client(base_url: str, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )


def create_app(settings: Settings | None = None, *, live_events: bool = True) -> FastAPI:
    """`live_events=False` runs without the Kafka consumer (for API tests that do not watch the stream)."""
    templates = make_templates()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or Settings()  # type: ignore[call-arg]
        configure_logging(cfg.log_level, cfg.log_format)
        token = parse_service_tokens(cfg.service_tokens).get("gateway")
        if token is None:
            raise ValueError("SERVICE_TOKENS has no `gateway` entry")
        keys_client = _client(cfg.keys_url, cfg.upstream_timeout.total_seconds())
        notifier_client = _client(cfg.notifier_url, cfg.notifier_timeout.total_seconds())
        live = LiveEvents(cfg.kafka_bootstrap_servers, cfg.kafka_topic, client_id="gateway-live")
        app.state.gateway = GatewayContext(
            settings=cfg,
            keys=KeysService(keys_client, token, cfg.acting_admin_secret),
            notifier=Notifier(notifier_client, token),
            sessions=Sessions(cfg),
            verifier=JwtVerifier(cfg),
            live=live,
            templates=templates,
        )
        templates.env.globals["auth_mode"] = cfg.auth_mode
        task = asyncio.create_task(live.run(), name="live-events") if live_events else None
        log.info("gateway ready on port %d (AUTH_MODE=%s)", cfg.port, cfg.auth_mode)
        freeze_startup_heap()
        try:
            yield
        finally:
            await cancel_all([task])
            await keys_client.aclose()
            await notifier_client.aclose()

    app = FastAPI(title="Keyward console gateway", version="1", lifespan=lifespan)
    install_error_handlers(app)
    _install_page_errors(app, templates)
    app.include_router(api_router)
    app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    async def keys_service() -> None:
        (await app.state.gateway.keys.client.get("/healthz")).raise_for_status()

    async def notifier() -> None:
        (await app.state.gateway.notifier.client.get("/healthz")).raise_for_status()

    async def events() -> None:
        if not app.state.gateway.live.ready.is_set():
            await tcp_reachable(app.state.gateway.settings.kafka_bootstrap_servers)
            raise RuntimeError("the live-event consumer is not positioned yet")

    # Only the keys service decides readiness: without the notifier or Kafka the console still works.
    # The gateway is behind the Ingress: its metrics are for Prometheus, which scrapes the pod directly.
    instrument(
        app,
        "gateway",
        {"keys": keys_service},
        informational={"notifier": notifier, "live_events": events},
        metrics_through_proxies=False,
    )
    app.add_middleware(BodySizeLimit, max_bytes=(settings.max_body_bytes if settings else 64 * 1024))
    app.add_middleware(SecurityHeaders)
    return app


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
                request, "error.html", {"error": body["error"], "status": exc.status}, status_code=exc.status
            )
        return JSONResponse(body, status_code=exc.status)
