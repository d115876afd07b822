"""One start-up shape for every service: settings, then a running context, then the FastAPI app around it.

A service writes `running(settings)`: an async context manager that opens what the service needs (pools,
clients, background tasks), yields its context object and closes them again in reverse order. `service_app`
builds the FastAPI app whose lifespan reads the settings, enters `running`, keeps the context on
`app.state.context` (the one place routes and checks find it) and serves `/healthz`, `/readyz` and
`/metrics` with the readiness checks the context names.
"""

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import asyncpg
import httpx
from fastapi import FastAPI, Request

from shared.errors import BodySizeLimit, install_error_handlers
from shared.heap import freeze_startup_heap
from shared.logging import configure_logging
from shared.observability import Readiness, ReadinessCheck, instrument, tcp_reachable
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)


class ServiceContext(Protocol):
    """What `running` yields: everything the routes and background tasks of one service share."""

    def readiness(self) -> Readiness: ...


C = TypeVar("C", bound=ServiceContext)


def database_check(pool: asyncpg.Pool) -> ReadinessCheck:
    return functools.partial(pool.fetchval, "SELECT 1")


def kafka_check(bootstrap: str) -> ReadinessCheck:
    """A broker accepts a connection (readiness must not wait on a client's metadata refresh)."""
    return functools.partial(tcp_reachable, bootstrap)


def http_check(client: httpx.AsyncClient, path: str = "/healthz") -> ReadinessCheck:
    """Another service answers its health check."""

    async def check() -> None:
        (await client.get(path, timeout=2.0)).raise_for_status()

    return check


def service_app(
    name: str,
    title: str,
    settings: Callable[[], S],
    running: Callable[[S], AbstractAsyncContextManager[ServiceContext]],
    *,
    shutdown_seconds: float,
    app_class: type[FastAPI] = FastAPI,
    max_body_bytes: int | None = None,
    metrics_through_proxies: bool = True,
    **fastapi_options: Any,
) -> FastAPI:
    """The app of service `name`; `settings` is called in the lifespan (never at import), then `running`, whose
    stop may take `shutdown_seconds` at most."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings()
        configure_logging(cfg.log_level, cfg.log_format)
        async with contextlib.AsyncExitStack() as stack:
            app.state.context = await stack.enter_async_context(running(cfg))
            freeze_startup_heap()
            yield
            # The pod's grace period is sized from this bound (tests/integration/deploy/test_shutdown_budget.py):
            # each step keeps to its own timeout, and whatever is still running past the whole is left behind
            # rather than killed mid-step by SIGKILL.
            try:
                async with asyncio.timeout(shutdown_seconds):
                    await stack.aclose()
            except TimeoutError:
                log.warning("%s: stopping took longer than %.0f s; leaving the rest", name, shutdown_seconds)

    app = app_class(title=title, version="1", lifespan=lifespan, **fastapi_options)
    install_error_handlers(app)
    instrument(app, name, lambda: app.state.context.readiness(), metrics_through_proxies=metrics_through_proxies)
    if max_body_bytes is not None:
        app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    return app


def context_of(request: Request) -> Any:
    """The running context of the app that serves `request` (typed by each service's own dependency)."""
    return request.app.state.context
