"""Which verify requests the fast path answers itself, and what it hands on to the FastAPI route."""

from types import SimpleNamespace

import orjson
import pytest

from services.keys import verify as fast
from shared.auth import ServiceTokens

TOKEN = "voice-token-0123456789"


class Inner:
    """Stands for the FastAPI app: records that it was called and the body it received."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"routed"})


@pytest.fixture
def answered(monkeypatch):
    keys: list[str] = []

    async def fake_verify(ctx, key: str) -> bytes:
        keys.append(key)
        return b'{"valid":false}'

    monkeypatch.setattr(fast.service, "verify", fake_verify)
    return keys


async def call(
    chunks: list[bytes],
    *,
    path: str = "/v1/keys/verify",
    token: str | None = TOKEN,
    content_type: bytes | None = b"application/json",
) -> tuple[Inner, int, bytes, dict[bytes, bytes]]:
    inner = Inner()
    state = SimpleNamespace(context=SimpleNamespace(service_tokens=ServiceTokens({"voice": TOKEN})))
    headers = []
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if content_type:
        headers.append((b"content-type", content_type))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    await fast.VerifyFastPath(inner, state)(scope, receive, send)  # type: ignore[arg-type]
    return inner, sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), dict(sent[0]["headers"])


async def test_an_ordinary_request_is_answered_without_the_route(answered):
    inner, status, body, headers = await call([b'{"key": "kwk_', b'abc"}'])
    assert (status, body, inner.bodies) == (200, b'{"valid":false}', [])
    assert answered == ["kwk_abc"]
    assert headers[b"content-type"] == b"application/json" and headers[b"content-length"] == b"15"


@pytest.mark.parametrize(
    ("chunks", "options"),
    [
        ([b'{"key": "kwk_abc"}'], {"token": None}),
        ([b'{"key": "kwk_abc"}'], {"token": "someone-elses-token-000"}),
        ([b'{"key": "kwk_abc"}'], {"content_type": b"text/plain"}),
        ([b'{"key": "kwk_abc"}'], {"content_type": None}),
        ([b'{"key": "kwk_abc"}'], {"path": "/v1/keys/verify/"}),
        ([b'{"key": "kwk_abc"'], {}),
        ([b'{"key": 1}'], {}),
        ([b'["kwk_abc"]'], {}),
        ([orjson.dumps({"key": "k" * 513})], {}),
        ([b'{"key": "kwk_abc", "pad": "', b"x" * 5000, b'"}'], {}),
    ],
    ids=["no-token", "wrong-token", "text", "no-type", "other-path", "bad-json", "not-string", "array", "long", "big"],
)
async def test_anything_else_goes_to_the_route_with_its_body_intact(answered, chunks, options):
    inner, status, body, _ = await call(chunks, **options)
    assert (status, body) == (299, b"routed")
    assert inner.bodies == [b"".join(chunks)]
    assert answered == []


async def test_an_unreachable_database_is_a_503_with_retry_after(monkeypatch):
    async def down(ctx, key):
        raise ConnectionRefusedError(111, "refused")

    monkeypatch.setattr(fast.service, "verify", down)
    inner, status, body, headers = await call([b'{"key": "kwk_abc"}'])
    assert status == 503 and inner.bodies == []
    assert orjson.loads(body)["error"]["code"] == "unavailable"
    assert headers[b"retry-after"] == b"5"


async def test_an_unexpected_error_is_the_error_shapes_500_not_a_bare_one(monkeypatch):
    async def broken(ctx, key):
        raise RuntimeError("a bug")

    monkeypatch.setattr(fast.service, "verify", broken)
    inner, status, body, headers = await call([b'{"key": "kwk_abc"}'])
    assert status == 500 and inner.bodies == []
    assert orjson.loads(body) == {"error": {"code": "internal", "message": "internal error"}}
    assert headers[b"content-type"] == b"application/json"
