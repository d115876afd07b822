"""Slow downloads in one process: `python -m bench.slowread URL PATH RATE SECONDS AT ADMIN...`.

At the epoch time AT, each ADMIN (an administrator of the directory) GETs PATH once with the gateway's token
and a claim of its own, then reads its answer at RATE bytes a second (as `curl --limit-rate`) until SECONDS are
over, on one connection each, all from this one process: twenty curl processes started at once cost the
machine more CPU than the service under test spends. Prints one JSON line: each answer's status, and the bytes
read in all.
"""

import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit

from bench.settings import load_dev_env


async def _read(host: str, port: int, path: str, admin: str, rate: int, until: float) -> tuple[int, int]:
    from shared.auth import parse_service_tokens, sign_acting_admin

    claim = sign_acting_admin(
        admin,
        secret=os.environ["ACTING_ADMIN_SECRET"],
        issuer="gateway",
        audience="keys",
        method="GET",
        path=urlsplit(path).path,
    )
    token = parse_service_tokens(os.environ["SERVICE_TOKENS"])["gateway"]
    # A small buffer: the reader takes what it reads at RATE, not what the kernel holds.
    reader, writer = await asyncio.open_connection(host, port, limit=rate)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"X-Acting-Admin: {claim}\r\nConnection: close\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status, got = int(head.split(b" ", 2)[1]), 0
        while time.monotonic() < until:
            chunk = await reader.read(rate)
            if not chunk:
                break
            got += len(chunk)
            await asyncio.sleep(1)
        return status, got
    finally:
        writer.close()


async def main(url: str, path: str, rate: int, seconds: float, at: float, admins: list[str]) -> dict[str, object]:
    parts = urlsplit(url)
    await asyncio.sleep(max(0.0, at - time.time()))
    until = time.monotonic() + seconds
    results = await asyncio.gather(
        *(_read(parts.hostname or "127.0.0.1", parts.port or 80, path, a, rate, until) for a in admins),
        return_exceptions=True,
    )
    statuses: dict[str, int] = {}
    for r in results:
        key = str(r[0]) if isinstance(r, tuple) else type(r).__name__
        statuses[key] = statuses.get(key, 0) + 1
    return {"statuses": statuses, "bytes": sum(r[1] for r in results if isinstance(r, tuple))}


if __name__ == "__main__":
    load_dev_env()
    url, path, rate, seconds, at, *names = sys.argv[1:]
    print(json.dumps(asyncio.run(main(url, path, int(rate), float(seconds), float(at), names))), flush=True)
