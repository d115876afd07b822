import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from shared.errors import BodySizeLimit, ErrorBody, error_body, error_responses, install_error_handlers


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


async def test_a_405_names_every_method_of_the_path_not_only_those_of_the_route_it_matched():
    app = app_raising(RuntimeError())
    router = APIRouter(prefix="/v1")

    @router.get("/things/{thing_id}")
    async def read(thing_id: str) -> None: ...

    @router.patch("/things/{thing_id}")
    async def rename(thing_id: str) -> None: ...

    @router.delete("/things/{thing_id}")
    async def delete(thing_id: str) -> None: ...

    app.include_router(router, prefix="/api")
    response = await call(app, "PUT", "/api/v1/things/1")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, PATCH"
    assert response.json() == {"error": {"code": "method_not_allowed", "message": "Method Not Allowed"}}
    assert (await call(app, "POST", "/echo")).status_code != 405
    assert (await call(app, "GET", "/echo")).headers["allow"] == "POST"


def test_error_responses_document_each_status_with_the_error_shape():
    responses = error_responses(404, 422, described={409: "the name is taken"})
    assert list(responses) == [404, 409, 422]
    assert all(r["model"] is ErrorBody for r in responses.values())
    assert responses[409]["description"] == "the name is taken"
    assert ErrorBody.model_validate(error_body(422, "bad", fields={"name": "too long"}))
    assert ErrorBody.model_validate(error_body(404, "gone")).model_dump(exclude_defaults=True) == {
        "error": {"code": "not_found", "message": "gone"}
    }
