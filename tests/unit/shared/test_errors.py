import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from shared.errors import BodySizeLimit, install_error_handlers


class Body(BaseModel):
    name: str


def app_raising(exc: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    @app.post("/echo")
    async def echo(body: Body) -> Body:
        return body

    app.add_middleware(BodySizeLimit, max_bytes=1000)
    return app


async def call(app: FastAPI, method: str, url: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    ) as c:
        return await c.request(method, url, **kwargs)


@pytest.mark.parametrize(
    "exc", [ConnectionRefusedError(111, "refused"), asyncpg.CannotConnectNowError("starting up"), TimeoutError()]
)
async def test_an_unreachable_dependency_is_a_503_with_retry_after(exc):
    response = await call(app_raising(exc), "GET", "/boom")
    assert response.status_code == 503
    assert response.json() == {
        "error": {"code": "unavailable", "message": "a dependency is unavailable; try again shortly"}
    }
    assert response.headers["retry-after"] == "5"


async def test_a_bug_is_a_500_that_says_nothing_of_its_cause():
    response = await call(app_raising(RuntimeError("secret detail kwk_abc")), "GET", "/boom")
    assert response.status_code == 500
    assert "kwk_abc" not in response.text and response.json()["error"]["code"] == "internal"


async def test_validation_errors_name_each_field_without_echoing_input():
    response = await call(app_raising(RuntimeError()), "POST", "/echo", json={"name": 12345678})
    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {"name"}
    assert "12345678" not in response.text


async def test_bodies_over_the_limit_are_413_with_or_without_content_length():
    app = app_raising(RuntimeError())
    declared = await call(app, "POST", "/echo", json={"name": "x" * 2000})
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "payload_too_large"

    async def chunks():
        for _ in range(10):
            yield b"x" * 500

    streamed = await call(app, "POST", "/echo", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "payload_too_large"
