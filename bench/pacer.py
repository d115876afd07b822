"""A steady-rate load in its own process: `python -m bench.pacer MODE URL RATE SECONDS ARG...`.

    create URL RATE SECONDS ORG_ID...   POST /v1/keys as the bench administrator, in those organizations
    verify URL RATE SECONDS KEYS_FILE   POST /v1/keys/verify with keys picked from the file (voice token)
    list URL RATE SECONDS               GET /v1/keys (the first page of 50) as the bench administrator

An open loop in its own process: request i is due at i/RATE seconds whatever the earlier ones are doing,
and its latency counts from when it was due, so a slow service shows up as latency, not as a lower rate.
HTTP/1.1 over raw asyncio streams on a fixed set of keep-alive connections: a Python HTTP client library
costs more CPU per request than the service on these two cores, and would measure itself.
Prints one JSON line with what it did.
"""

import asyncio
import json
import os
import random
import signal
import sys
import time
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

from bench.httpraw import read_response
from bench.settings import load_dev_env

CONNECTIONS = 32


class Credentials:
    """The gateway's token and an X-Acting-Admin claim for each request (the keys service accepts one once)."""

    def __init__(self) -> None:
        from shared.auth import parse_service_tokens

        self.token = parse_service_tokens(os.environ["SERVICE_TOKENS"])["gateway"]
        self.secret = os.environ["ACTING_ADMIN_SECRET"]

    def headers(self, method: str, path: str) -> str:
        from bench.data import ADMIN
        from shared.auth import sign_acting_admin

        claim = sign_acting_admin(
            ADMIN, secret=self.secret, issuer="gateway", audience="keys", method=method, path=path
        )
        return f"Authorization: Bearer {self.token}\r\nX-Acting-Admin: {claim}\r\n"


class Creates:
    method = "POST"
    path = "/v1/keys"

    def __init__(self, orgs: list[str]) -> None:
        self.orgs = orgs
        self.credentials = Credentials()
        self.run = uuid4().hex[:8]

    def request(self, n: int) -> tuple[bytes, str]:
        body = {"name": f"paced-{self.run}-{n}", "organization_id": random.choice(self.orgs)}
        return json.dumps(body).encode(), self.credentials.headers("POST", self.path)


class Lists:
    method = "GET"
    path = "/v1/keys"

    def __init__(self) -> None:
        self.credentials = Credentials()

    def request(self, n: int) -> tuple[bytes, str]:
        return b"", self.credentials.headers("GET", self.path)


class Verifies:
    method = "POST"
    path = "/v1/keys/verify"

    def __init__(self, args: list[str]) -> None:
        from shared.auth import parse_service_tokens

        with open(args[0]) as f:
            self.keys = f.read().split()
        self.auth = f"Authorization: Bearer {parse_service_tokens(os.environ['SERVICE_TOKENS'])['voice']}\r\n"

    def request(self, n: int) -> tuple[bytes, str]:
        return json.dumps({"key": random.choice(self.keys)}).encode(), self.auth


async def pace(mode: str, url: str, rate: float, seconds: float, args: list[str]) -> dict[str, object]:
    """Until SECONDS are over or SIGINT/SIGTERM comes; then waits for the answers and reports."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    load: Creates | Lists | Verifies = (
        Creates(args) if mode == "create" else Lists() if mode == "list" else Verifies(args)
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    total = int(rate * seconds)
    due: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    # (when the request was due, epoch seconds; its latency; how late it was sent) for PACER_SAMPLES, to split
    # a run in phases and to tell a stalled load generator from a slow service.
    samples: list[tuple[float, float, float]] = []
    epoch_offset = time.time() - time.perf_counter()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (job := await due.get()) is not None:
                n, at = job
                body, auth = load.request(n)
                head = (
                    f"{load.method} {load.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n{auth}\r\n"
                )
                writer.write(head.encode() + body)
                sent_at = time.perf_counter()
                try:
                    status, _ = await read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    status = 0
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(time.perf_counter() - at)
                samples.append((at + epoch_offset, latencies[-1], sent_at - at))
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(CONNECTIONS)]
    begin = time.perf_counter()
    sent = 0
    lags: list[float] = []
    for n in range(total):
        at = begin + n / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if stop.is_set():
            break
        lags.append(time.perf_counter() - at)
        due.put_nowait((n, at))
        sent += 1
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - begin
    if os.environ.get("PACER_SAMPLES"):
        with open(os.environ["PACER_SAMPLES"], "w") as f:  # noqa: ASYNC230 (once, after the run)
            f.writelines(f"{due:.4f} {1000 * latency:.3f} {1000 * late:.3f}\n" for due, latency, late in samples)
    latencies.sort()
    late = sorted(sent_late for _, _, sent_late in samples)
    return {
        "sent": sent,
        "created": statuses.get(201, 0),
        "ok": statuses.get(200, 0) + statuses.get(201, 0),
        "statuses": statuses,
        "seconds": round(elapsed, 2),
        "rate": round(sent / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
        "p99_ms": round(1000 * latencies[max(0, int(len(latencies) * 0.99) - 1)], 2) if latencies else None,
        "max_ms": round(1000 * latencies[-1], 2) if latencies else None,
        # How late requests were written (the pacer's loop, or all its connections waiting on the service), and how
        # late the pacer's own loop woke for them (its share of the cores): both are inside the latencies above.
        "sent_late_p99_ms": _p99_ms(late),
        "pacer_lag_p99_ms": _p99_ms(sorted(lags)),
    }


def _p99_ms(ordered: list[float]) -> float | None:
    return round(1000 * ordered[max(0, int(len(ordered) * 0.99) - 1)], 2) if ordered else None


async def spawn(
    mode: str, url: str, rate: float, seconds: float, *args: str, samples: str | None = None
) -> asyncio.subprocess.Process:
    """For a scenario: this load in a process of its own (each request's due time and latency written to
    `samples`); `finish` waits for it (or SIGINT ends it early)."""
    env = {**os.environ, "PACER_SAMPLES": samples} if samples else None
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.pacer",
        mode,
        url,
        str(rate),
        str(seconds),
        *args,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )


async def finish(process: asyncio.subprocess.Process) -> dict[str, Any]:
    out, _ = await process.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


if __name__ == "__main__":
    load_dev_env()
    mode, url, rate, seconds, *rest = sys.argv[1:]
    print(json.dumps(asyncio.run(pace(mode, url, float(rate), float(seconds), rest))), flush=True)
