"""BoundedStreamingResponse: a stream cut off by its stall timeout or its deadline closes its source (whose
clean-up releases what it holds) and never sends the last chunk, so the reader cannot take it as complete."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.types import Message

from shared.streaming import BoundedStreamingResponse


class Source:
    """Chunks forever (or `count` of them, `every` seconds apart), remembering whether its clean-up ran."""

    def __init__(self, count: int | None = None, every: float = 0.0, cleanup: float = 0.0) -> None:
        self.count, self.every, self.cleanup, self.closed = count, every, cleanup, False

    async def chunks(self) -> AsyncIterator[bytes]:
        n = 0
        try:
            while self.count is None or n < self.count:
                n += 1
                await asyncio.sleep(self.every)
                yield b"row\r\n"
        finally:
            await asyncio.sleep(self.cleanup)  # a rollback, an audit row
            self.closed = True


async def _receive() -> Message:
    await asyncio.Event().wait()  # the client never goes away
    raise AssertionError


def _asgi_scope() -> dict[str, object]:
    return {"type": "http", "asgi": {"spec_version": "2.3"}}


async def test_a_reader_that_takes_nothing_ends_the_stream_at_the_stall_timeout_and_closes_its_source():
    source, sent = Source(), []
    blocked = asyncio.Event()

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) >= 3:  # the socket's buffers are full from the second chunk on
            await blocked.wait()

    response = BoundedStreamingResponse(source.chunks(), deadline=60, stall_timeout=0.2)
    await asyncio.wait_for(response(_asgi_scope(), _receive, send), timeout=5)
    assert source.closed
    assert not any(m["type"] == "http.response.body" and not m.get("more_body") for m in sent)


async def test_a_stream_past_its_deadline_ends_and_closes_its_source_though_its_reader_keeps_up():
    source, sent = Source(every=0.05), []

    async def send(message: Message) -> None:
        sent.append(message)

    response = BoundedStreamingResponse(source.chunks(), deadline=0.3, stall_timeout=60)
    await asyncio.wait_for(response(_asgi_scope(), _receive, send), timeout=5)
    assert source.closed
    assert 2 < len(sent) < 10
    assert sent[-1].get("more_body") is True


async def test_a_stream_that_ends_in_time_sends_its_last_chunk():
    source, sent = Source(count=3), []

    async def send(message: Message) -> None:
        sent.append(message)

    response = BoundedStreamingResponse(source.chunks(), deadline=5, stall_timeout=5)
    await asyncio.wait_for(response(_asgi_scope(), _receive, send), timeout=5)
    assert source.closed
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert len(sent) == 1 + 3 + 1


async def test_a_cancelled_stream_finishes_its_sources_clean_up_before_it_ends_however_often_it_is_cancelled():
    """A client's disconnect cancels the stream, and its cancel scope cancels every later await again: the
    source's clean-up must still be over before the response is, or its connection goes back mid-rollback."""
    source = Source(cleanup=0.2)
    blocked = asyncio.Event()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            await blocked.wait()

    response = BoundedStreamingResponse(source.chunks(), deadline=60, stall_timeout=60)
    task = asyncio.create_task(response.stream_response(send))
    await asyncio.sleep(0.05)
    for _ in range(20):  # as anyio does: again and again while the task is in the cancelled scope
        task.cancel()
        await asyncio.sleep(0.005)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert task.cancelled()
    assert source.closed
