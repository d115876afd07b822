"""Verify's coalesced lookups (services/keys/lookups.py), with the repository's two statements faked."""

import asyncio
from typing import Any

import pytest

from services.keys import repository
from services.keys.lookups import DigestLookups


class Statements:
    """Stands in for the two statements: rows by digest, every call recorded."""

    def __init__(self, rows: dict[bytes, str], fail: Exception | None = None) -> None:
        self.rows = rows
        self.fail = fail
        self.calls: list[list[bytes]] = []

    async def one(self, pool: Any, digests: list[bytes]) -> dict[str, Any] | None:
        return next(iter(await self.many(pool, digests)), None)

    async def many(self, pool: Any, digests: list[bytes]) -> list[dict[str, Any]]:
        self.calls.append(digests)
        await asyncio.sleep(0.01)
        if self.fail:
            raise self.fail
        return [{"digest": d, "id": self.rows[d]} for d in digests if d in self.rows]


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Statements:
    fake = Statements({b"a": "key-a", b"b": "key-b", b"new-c": "key-c"})
    monkeypatch.setattr(repository, "find_by_digest", fake.one)
    monkeypatch.setattr(repository, "find_by_digests", fake.many)
    return fake


async def test_requests_ready_together_share_one_statement_and_each_gets_its_own_row(statements):
    finder = DigestLookups(pool=None, max_batch=64)  # type: ignore[arg-type]
    # One key per HMAC secret of the ring: c was made under the newer one.
    asked = [[b"a"], [b"b"], [b"unknown"], [b"old-c", b"new-c"], [b"a"]]
    rows = await asyncio.gather(*(finder.find(d) for d in asked))
    assert [r and r["id"] for r in rows] == ["key-a", "key-b", None, "key-c", "key-a"]
    assert len(statements.calls) == 1
    assert sorted(statements.calls[0]) == sorted({b"a", b"b", b"unknown", b"old-c", b"new-c"})


async def test_a_lone_request_goes_at_once_and_a_full_batch_does_not_wait_for_the_turn(statements):
    finder = DigestLookups(pool=None, max_batch=3)  # type: ignore[arg-type]
    assert (await finder.find([b"a"]))["id"] == "key-a"  # type: ignore[index]
    await asyncio.gather(*(finder.find([f"x{n}".encode()]) for n in range(7)))
    assert [len(c) for c in statements.calls] == [1, 3, 3, 1]  # a lone one; then seven ready together


async def test_the_statements_failure_is_every_waiting_requests(statements):
    statements.fail = TimeoutError("no connection within DB_ACQUIRE_TIMEOUT")
    finder = DigestLookups(pool=None, max_batch=64)  # type: ignore[arg-type]
    answers = await asyncio.gather(*(finder.find([b"a"]) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(a, TimeoutError) for a in answers)
    statements.fail = None
    assert (await finder.find([b"b"]))["id"] == "key-b"  # type: ignore[index]


async def test_a_request_that_goes_away_leaves_the_others_answered(statements):
    finder = DigestLookups(pool=None, max_batch=64)  # type: ignore[arg-type]
    leaving = asyncio.ensure_future(finder.find([b"a"]))
    staying = asyncio.ensure_future(finder.find([b"b"]))
    await asyncio.sleep(0)
    leaving.cancel()
    assert (await asyncio.wait_for(staying, 1))["id"] == "key-b"  # type: ignore[index]
    assert leaving.cancelled()
    await finder.close()


async def test_a_lookup_stopped_with_the_service_fails_its_requests_as_unavailable(statements):
    """Cancelled (the service stopping): every request waiting on it ends, with a 503's error, not a hang."""
    finder = DigestLookups(pool=None, max_batch=64)  # type: ignore[arg-type]
    waiting = [asyncio.ensure_future(finder.find([b"a"])) for _ in range(3)]
    await asyncio.sleep(0.001)  # the statement is under way
    for task in list(finder._running):
        task.cancel()
    answers = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 1)
    assert all(isinstance(a, ConnectionError) for a in answers), answers


async def test_close_sends_what_waits_for_the_next_turn(statements):
    finder = DigestLookups(pool=None, max_batch=64)  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(finder.find([b"a"]))
    await asyncio.sleep(0)
    await finder.close()
    assert waiting.done() and waiting.result()["id"] == "key-a"


async def test_a_batch_of_one_uses_a_statement_each(statements):
    finder = DigestLookups(pool=None, max_batch=1)  # type: ignore[arg-type]
    await asyncio.gather(*(finder.find([b"a"]) for _ in range(4)))
    assert len(statements.calls) == 4
