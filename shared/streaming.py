"""A streamed answer that cannot hold what it reads from for longer than its bounds.

A response streamed from a database cursor holds a pooled connection and its transaction until the last chunk
is sent, and the server's `send` of a chunk waits while the socket's buffers are full: a client that stops
reading (or reads at a crawl) would hold them for as long as it likes. `BoundedStreamingResponse` ends the
stream when one send makes no progress for `stall_timeout` seconds, or when the whole stream passes
`deadline` seconds. It then closes the body iterator (its `finally` blocks run: transactions end, connections
go back) and returns without the last chunk, so the server closes the connection and the client sees a cut
stream, never a complete-looking one. The iterator is closed in every case, a client's disconnect included.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Send

log = logging.getLogger(__name__)

# The most the iterator's clean-up (a rollback, an audit row) may take once the stream is over.
CLOSE_TIMEOUT_SECONDS = 10.0


class BoundedStreamingResponse(StreamingResponse):
    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        deadline: float,
        stall_timeout: float,
        media_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        what: str = "stream",
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.content = content
        self.deadline = deadline
        self.stall_timeout = stall_timeout
        self.what = what

    async def stream_response(self, send: Send) -> None:
        sent = 0
        try:
            async with asyncio.timeout(self.deadline):
                async with asyncio.timeout(self.stall_timeout):
                    await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                async for chunk in self.content:
                    # The server's send returns once the socket's buffers have room again: no return within the
                    # stall timeout is a reader that stopped.
                    try:
                        async with asyncio.timeout(self.stall_timeout):
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    except TimeoutError:
                        log.warning(
                            "%s ended: the reader took no data for %.0f s (%d bytes sent)",
                            self.what,
                            self.stall_timeout,
                            sent,
                        )
                        return
                    sent += len(chunk)
        except TimeoutError:
            log.warning(
                "%s ended: not finished within its deadline of %.0f s (%d bytes sent)", self.what, self.deadline, sent
            )
            return
        finally:
            await _close(self.content)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _close(content: AsyncIterator[bytes]) -> None:
    """Runs the iterator's clean-up to its end, in a task of its own, even while this task is being cancelled
    (a client's disconnect cancels the stream, and its cancel scope cancels every later await too)."""
    aclose = getattr(content, "aclose", None)
    if aclose is None:
        return
    closing = asyncio.ensure_future(asyncio.wait_for(aclose(), CLOSE_TIMEOUT_SECONDS))
    # Waited for to its end even when cancelled (anyio cancels again at every await of a cancelled scope): what
    # the source holds (a pooled connection amid its rollback) must not be released before it is done with it.
    cancelled = False
    while not closing.done():
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:
            break
    if not closing.cancelled() and closing.exception() is not None:
        log.warning("closing a stream's source failed", exc_info=closing.exception())
    if cancelled:
        raise asyncio.CancelledError
