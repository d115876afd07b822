"""HTTP/1.1 over one keep-alive asyncio stream: a few microseconds of client per request, so what is
timed is the server (a Python HTTP client library spends more per request than some of our endpoints)."""

import asyncio
from urllib.parse import urlsplit


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next((int(x.split(":", 1)[1]) for x in lines[1:] if x.lower().startswith("content-length:")), 0)
    return status, await reader.readexactly(length)


class RawClient:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if self._stream is None:
            self._stream = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._stream
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{lines}\r\n".encode())
        return await read_response(reader)

    async def close(self) -> None:
        if self._stream is not None:
            self._stream[1].close()
            self._stream = None
