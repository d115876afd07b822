"""The error shape of every API: {"error": {"code", "message", "fields"?}}, never a 500 for bad input."""

import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error meant for the caller: its status, code and message are safe to show."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.fields = fields
        self.headers = headers


class NotFound(ApiError):
    def __init__(self, what: str = "resource"):
        super().__init__(404, f"{what} not found")


class Conflict(ApiError):
    def __init__(self, message: str, fields: dict[str, str] | None = None):
        super().__init__(409, message, fields=fields)


class ErrorDetail(BaseModel):
    code: str = Field(
        description="For programs: `bad_request`, `unauthorized`, `forbidden`, `csrf_failed`, `not_found`, "
        "`method_not_allowed`, `conflict`, `payload_too_large`, `unsupported_media_type`, `validation_failed`, "
        "`too_many_requests`, `unavailable` or `internal`"
    )
    message: str = Field(description="For people: what went wrong")
    fields: dict[str, str] = Field(
        default_factory=dict, description="The fields at fault, each with what is wrong with it; absent when none"
    )


class ErrorBody(BaseModel):
    """The body of every error answer (the OpenAPI documents' model of it; `error_body` builds it)."""

    error: ErrorDetail


# What each error status means wherever it is answered; a route may say more of its own (`error_responses`).
ERROR_DESCRIPTIONS = {
    400: "The body is not valid JSON",
    401: "Authentication is missing or invalid",
    403: "The caller may not do this",
    404: "Not found, or outside the caller's reach",
    409: "It conflicts with what exists",
    413: "The body is larger than the service accepts (`MAX_BODY_BYTES`)",
    415: "The body is not of a media type this call accepts",
    422: "A parameter or field is invalid: `fields` names each",
    429: "Too many of these at once: try again after `Retry-After` seconds",
    500: "An unexpected failure (`internal`); never an answer to bad input",
    503: "A dependency is unavailable, or every connection of the service's pool stayed taken for "
    "`DB_ACQUIRE_TIMEOUT`: try again after `Retry-After` seconds",
}


def error_responses(*statuses: int, described: Mapping[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for a route or router: each status with the error shape, described by
    ERROR_DESCRIPTIONS or, for the statuses in `described`, by what the route says."""
    descriptions = {status: ERROR_DESCRIPTIONS[status] for status in statuses} | dict(described or {})
    return {status: {"model": ErrorBody, "description": text} for status, text in sorted(descriptions.items())}


def error_body(
    status: int, message: str, code: str | None = None, fields: dict[str, str] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code or _CODES.get(status, "error"), "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


# A dependency that is down or saturated: the caller should retry, so these answer 503 with Retry-After.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    ConnectionError,
    TimeoutError,
)
RETRY_AFTER_SECONDS = "5"


def unavailable_body() -> dict[str, Any]:
    return error_body(503, "a dependency is unavailable; try again shortly")


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status, exc.message, exc.code, exc.fields), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields: dict[str, str] = {}
        for err in exc.errors():
            fields.setdefault(_field_path(tuple(err.get("loc", ()))), str(err.get("msg", "invalid")))
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return JSONResponse(error_body(400, "the body is not valid JSON"), status_code=400)
        return JSONResponse(error_body(422, "the request has invalid fields", fields=fields), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = exc.headers
        if exc.status_code == 405 and (allowed := allowed_methods(request)):
            headers = {**(headers or {}), "Allow": allowed}
        return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code, headers=headers)

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("dependency unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse(unavailable_body(), status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS})

    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(500, "internal error", "internal"), status_code=500)

    _ = HTTPException  # FastAPI's HTTPException subclasses Starlette's and is handled above


def allowed_methods(request: Request) -> str | None:
    """Every method of the path the request was routed to, as its OpenAPI path item lists them.

    Starlette's 405 names the methods of the one route it matched, and a path served by several routes
    (`GET /v1/keys` and `POST /v1/keys`) has one route per method. The routes are walked as FastAPI walks
    them for the OpenAPI document (`iter_route_contexts`: included routers' routes with their prefixes).
    """
    matched = request.scope.get("route")
    if matched is None:
        return None
    contexts = list(iter_route_contexts(request.app.router.routes))
    path = next((c.path_format for c in contexts if c.original_route is matched), None)
    if path is None:
        return None
    methods = {method for c in contexts if c.path_format == path for method in c.methods or ()}
    return ", ".join(sorted(methods)) or None


class BodySizeLimit:
    """Refuses bodies over a limit with 413, whether or not the client sent Content-Length.

    A streamed body that grows past the limit gets its 413 from here; the app then sees the client
    disconnect, and whatever it still tries to send is dropped.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(send)
                return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, send: Send) -> None:
        body = JSONResponse(error_body(413, f"the body is larger than {self.max_bytes} bytes")).body
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
