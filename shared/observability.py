"""What every service serves for operators: /healthz, /readyz and /metrics, and request metrics by route."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

REQUEST_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template",
    ["service", "method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REQUESTS = Counter("http_requests_total", "HTTP requests by route template", ["service", "method", "route", "status"])

ReadinessCheck = Callable[[], Awaitable[object]]


class RequestMetrics:
    """Times each request under its route template (never the raw path, which would explode cardinality)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            # path_format: the template without its convertors (`/v1/keys/{key_id}`, not `{key_id:uuid}`).
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            if template not in ("/metrics", "/healthz", "/readyz"):
                labels = (self.service, scope["method"], template, str(status))
                REQUEST_LATENCY.labels(*labels).observe(time.perf_counter() - started)
                REQUESTS.labels(*labels).inc()


# Headers a reverse proxy (ingress-nginx, a load balancer) adds to what it relays; a scraper talking to the
# pod directly sends none of them.
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")
# Every check runs at once and gets this long: /readyz answers well within the probes' 5 s timeout however
# many dependencies hang.
CHECK_TIMEOUT_SECONDS = 2.0


class Readiness(NamedTuple):
    """`required` checks decide readiness; `informational` ones are reported but never take the pod out of
    service (a dependency whose outage the service rides out: it would only make every replica unready)."""

    required: Mapping[str, ReadinessCheck]
    informational: Mapping[str, ReadinessCheck]


def operations_router(
    readiness: Callable[[], Readiness], *, metrics_through_proxies: bool = True, timeout: float = CHECK_TIMEOUT_SECONDS
) -> APIRouter:
    """/healthz, /readyz (the checks `readiness()` names when asked) and /metrics.

    `metrics_through_proxies=False` (the gateway, the one service behind the Ingress): `/metrics` answers
    404 to a request that came through a proxy, so the outside cannot read the metrics of the pod."""
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        required, informational = readiness()
        results = await run_checks({**informational, **required}, timeout)
        ready = all(results[name] == "ok" for name in required)
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": results}, 200 if ready else 503)

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        if not metrics_through_proxies and any(h in request.headers for h in PROXY_HEADERS):
            raise HTTPException(404, "Not Found")
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def run_checks(checks: Mapping[str, ReadinessCheck], timeout: float) -> dict[str, str]:
    """Runs every check at once, each bounded by `timeout`: "ok", or why it failed."""

    async def one(check: ReadinessCheck) -> str:
        try:
            await asyncio.wait_for(check(), timeout)
        except Exception as exc:
            return f"failing: {type(exc).__name__}"
        return "ok"

    outcomes = await asyncio.gather(*(one(check) for check in checks.values()))
    return dict(zip(checks, outcomes, strict=True))


async def tcp_reachable(addresses: str) -> None:
    """Raises unless one of `host:port,host:port` accepts a TCP connection."""
    last: Exception = ConnectionError(f"no address in {addresses!r}")
    for address in addresses.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            await writer.wait_closed()
            return
        except OSError as exc:
            last = exc
    raise last


def instrument(
    app: FastAPI, service: str, readiness: Callable[[], Readiness], *, metrics_through_proxies: bool = True
) -> None:
    app.include_router(operations_router(readiness, metrics_through_proxies=metrics_through_proxies))
    app.add_middleware(RequestMetrics, service=service)
