"""The hot path of `POST /v1/keys/verify`, answered before FastAPI's routing and dependency machinery.

Voice clients verify on every sign-in, so this call is most of the service's traffic. Through FastAPI its
Python (routing, dependency solving, model validation and four middlewares) cost several times the
database round trip (figures: docs/benchmarks.md, "Figures behind the code").

Only the ordinary request is answered here: a known service token, a JSON body of at most
`MAX_BODY_BYTES` that is an object with a string `key`. Anything else (no or a wrong token, another
content type, a bigger body, bad JSON, a missing or over-long key) is handed on, with the body replayed,
to the FastAPI route in `endpoints.py`, so every error keeps its one documented shape and the OpenAPI
document keeps describing the call. Both answer from `service.verify`.
"""

import logging
import time

import orjson
from prometheus_client import Counter, Histogram
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.keys import service
from services.keys.schemas import MAX_PRESENTED_KEY
from shared.errors import RETRY_AFTER_SECONDS, UNAVAILABLE_ERRORS, error_body, unavailable_body
from shared.observability import REQUEST_LATENCY, REQUESTS

log = logging.getLogger(__name__)

PATH = "/v1/keys/verify"
# A verify body is `{"key": "kwk_…"}`, about 60 bytes; this leaves room for whitespace and extra fields.
MAX_BODY_BYTES = 4096

_JSON_HEADERS = [(b"content-type", b"application/json")]


def _timers(status: int) -> tuple[Histogram, Counter]:
    labels = ("keys", "POST", PATH, str(status))
    return REQUEST_LATENCY.labels(*labels), REQUESTS.labels(*labels)


class VerifyFastPath:
    """Answers the ordinary verify request itself; hands every other request to `app`.

    It runs in front of the application's whole middleware stack (see `KeysApp`), so it answers a request
    the way that stack would: 503 for an unavailable dependency, the error shape's 500 for anything else."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state
        # Bound once: a label lookup per request would cost more than the rest of the bookkeeping.
        self._ok = _timers(200)
        self._unavailable = _timers(503)
        self._failed = _timers(500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = self.state
        authorization = content_type = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value
        if (
            content_type is None
            or not content_type.startswith(b"application/json")
            or state.context.service_tokens.service_for(authorization) is None
        ):
            await self.app(scope, receive, send)
            return
        body, complete = await _read_body(receive)
        key = _key_of(body) if complete else None
        if key is None:
            await self.app(scope, _replay(body, complete, receive), send)
            return
        try:
            answer = await service.verify(state.context, key)
        except UNAVAILABLE_ERRORS as exc:
            log.warning("dependency unavailable on POST %s: %s", PATH, type(exc).__name__)
            await _send(send, 503, orjson.dumps(unavailable_body()), [(b"retry-after", RETRY_AFTER_SECONDS.encode())])
            _observe(self._unavailable, started)
            return
        except Exception:
            log.exception("unhandled error on POST %s", PATH)
            await _send(send, 500, orjson.dumps(error_body(500, "internal error", "internal")))
            _observe(self._failed, started)
            return
        await _send(send, 200, answer)
        _observe(self._ok, started)


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The body, or its first chunks once it passes MAX_BODY_BYTES (then `complete` is False)."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return body, False
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body, True
        if len(body) > MAX_BODY_BYTES:
            return body, False


def _key_of(body: bytes) -> str | None:
    if len(body) > MAX_BODY_BYTES:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    key = parsed.get("key") if isinstance(parsed, dict) else None
    return key if isinstance(key, str) and len(key) <= MAX_PRESENTED_KEY else None


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A receive that gives back what was already read, then the rest of the stream."""
    replayed = False

    async def replaying() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replaying


async def _send(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _observe(timers: tuple[Histogram, Counter], started: float) -> None:
    latency, count = timers
    latency.observe(time.perf_counter() - started)
    count.inc()
