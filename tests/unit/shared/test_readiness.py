"""/readyz answers within its bound however many dependencies hang, and only required checks decide it."""

import asyncio
import time

import httpx
from fastapi import FastAPI

from shared.observability import Readiness, operations_router


def app_with(readiness: Readiness, timeout: float) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(operations_router(lambda: readiness, timeout=timeout))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def hangs() -> None:
    await asyncio.sleep(30)


async def fails() -> None:
    raise ConnectionRefusedError


async def answers() -> None:
    return None


async def test_hanging_checks_run_at_once_and_are_cut_at_the_bound():
    readiness = Readiness({"a": hangs, "b": hangs, "c": hangs}, {"d": hangs})
    async with app_with(readiness, timeout=0.3) as client:
        started = time.perf_counter()
        answer = await client.get("/readyz")
        took = time.perf_counter() - started
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "not ready",
        "checks": {name: "failing: TimeoutError" for name in "abcd"},
    }
    assert took < 0.9, f"four hanging checks took {took:.2f} s: they ran one after another"


async def test_an_informational_dependency_never_makes_the_pod_unready():
    async with app_with(Readiness({"database": answers}, {"kafka": fails, "smtp": hangs}), timeout=0.2) as client:
        answer = await client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["checks"] == {
        "database": "ok",
        "kafka": "failing: ConnectionRefusedError",
        "smtp": "failing: TimeoutError",
    }


async def test_a_failing_required_check_makes_it_unready():
    async with app_with(Readiness({"database": fails}, {}), timeout=0.2) as client:
        answer = await client.get("/readyz")
    assert (answer.status_code, answer.json()["status"]) == (503, "not ready")
