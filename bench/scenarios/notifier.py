"""Scenario 5: the notifier's fan-out against a bare aiosmtplib loop sending the same messages.

`expiring` events (one per key, threshold 7 days) for keys of the run's tenants, each tenant with its
administrators, are produced to a fresh topic before the notifier starts; the fan-out counts from the
first notice received to the last delivery's `sent_at`. The SMTP sink records what it received, and the
baseline sends exactly those messages again, on as many connections as the notifier's SENDER_CONCURRENCY.
"""

import asyncio
import base64
import importlib.util
import json
import time
from pathlib import Path
from uuid import uuid4

import aiosmtplib
import asyncpg

from bench import data
from bench.profile import profiled
from bench.report import Check, Result
from bench.stack import CpuMeter, Process, fresh_topic, running
from bench.world import Bench
from deploy.local import kafka_access
from services.keys import events
from services.keys.repository import KEY_COLUMNS, ORGANIZATION_NAMES
from shared.events import encode
from shared.kafka import idempotent_producer

THRESHOLD = 7 * 86400
SENDER_CONCURRENCY = 4  # the notifier's default, stated so both sides use the same


async def _administrators(conn: asyncpg.Connection, tenants: list[data.Org], per_tenant: int) -> None:
    rows = [
        (uuid4(), f"bench.{t.id.hex[:8]}.{n}", f"admin{n}@{t.id.hex[:8]}.example.com", f"Admin {n}", t.id, t.id)
        for t in tenants
        for n in range(per_tenant)
    ]
    await conn.executemany(
        """
        INSERT INTO keys.administrators (id, username, email, display_name, level, role, organization_id, tenant_id)
        VALUES ($1, $2, $3, $4, 'tenant', 'customer_administrator', $5, $6)
        """,
        rows,
    )


async def _events(b: Bench, conn: asyncpg.Connection, topic: str, count: int) -> None:
    """Keys expiring in 6 days (already announced, so the keys service's watcher stays quiet) and their events."""
    prefix = f"notice{b.loaded}-"
    tenant_orgs = [o for o in b.orgs if o.depth >= 1]
    await data.load_keys(
        b.dsn, tenant_orgs, count, first=b.loaded, prefix=prefix, spread=60, lifetime=6 * 86400, noticed=THRESHOLD
    )
    b.loaded += count
    # The columns the keys service's watcher reads, so the events are the ones it would write.
    rows = await conn.fetch(
        f"""SELECT {KEY_COLUMNS}, $2::bigint AS threshold, extract(epoch FROM expires_at - now()) AS seconds_left,
                   {ORGANIZATION_NAMES}
            FROM keys.api_keys k WHERE name LIKE $1""",
        prefix + "%",
        THRESHOLD,
    )
    producer = idempotent_producer(kafka_access.access(), "bench-events")
    await producer.start()
    try:
        deliveries = []
        for row in rows:
            key, value, headers = encode(events.expiring(row))
            deliveries.append(await producer.send(topic, value=value, key=key, headers=headers))
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


async def _fan_out(conn: asyncpg.Connection, expected: int, timeout: float) -> tuple[float, float, int]:
    """(seconds from the first notice received to the last delivery sent, seconds since now, failed)."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        sent, failed = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed') "
            "FROM notifier.deliveries"
        )
        if sent + failed >= expected:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the notifier sent {sent} of {expected} e-mails in {timeout:.0f} s")
        await asyncio.sleep(0.1)
    span = await conn.fetchval(
        "SELECT extract(epoch FROM (SELECT max(sent_at) FROM notifier.deliveries)"
        " - (SELECT min(received_at) FROM notifier.notices))"
    )
    return float(span), time.monotonic() - started, failed


def _recorded(path: Path, count: int) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()[:count]]


async def _bare(port: int, recorded: Path, count: int) -> float:
    messages = _recorded(recorded, count)
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    for m in messages:
        queue.put_nowait(m)

    async def sender() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await smtp.connect()
        try:
            while not queue.empty():
                m = queue.get_nowait()
                await smtp.sendmail(m["from"], m["to"], base64.b64decode(m["data"]))  # type: ignore[arg-type]
        finally:
            await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(SENDER_CONCURRENCY)))
    return len(messages) / (time.perf_counter() - started)


async def run(b: Bench) -> list[Result]:
    if importlib.util.find_spec("services.notifier.__main__") is None:
        return [Result(5, "notifier fan-out", skipped="services/notifier is not there yet")]
    events, per_tenant = b.sizes.notifier_events, b.sizes.notifier_admins
    expected = events * per_tenant
    topic = await fresh_topic()
    recorded = b.workdir / "smtp-record.jsonl"
    conn = await b.connect()
    try:
        await _administrators(conn, [o for o in b.orgs if o.depth == 1], per_tenant)
        await _events(b, conn, topic, events)
        sink = Process("smtpsink", ["-m", "bench.smtpsink"], {"SINK_RECORD": str(recorded)}, http=False)
        async with running(sink), running(Process.service("keys", b.service_env(KAFKA_TOPIC=topic))) as keys:
            notifier = Process.service(
                "notifier",
                b.service_env(
                    KAFKA_TOPIC=topic,
                    KEYS_URL=keys.url,
                    SMTP_HOST="127.0.0.1",
                    SMTP_PORT=str(sink.port),
                    NOTIFIER_CONSUMER_GROUP=f"notifier-bench-{uuid4().hex[:8]}",
                    SENDER_CONCURRENCY=str(SENDER_CONCURRENCY),
                    # The scenario measures single e-mails' fan-out: the run's keys of a tenant, announced
                    # together, would otherwise go out as one digest per administrator (issue 21).
                    NOTICE_DIGEST_MIN=str(10**9),
                ),
            )
            async with running(notifier), profiled(notifier.pid, "notifier"):
                meter = CpuMeter(notifier=[notifier.pid], sink=[sink.pid], keys=[keys.pid]).start()
                span, waited, failed = await _fan_out(conn, expected, 120 if b.sizes.mode == "quick" else 900)
                cpu = meter.stop()
            bare_rate = await _bare(sink.port, recorded, expected)
    finally:
        await conn.close()
    rate = expected / span
    ratio = rate / bare_rate
    result = Result(
        5,
        "notifier fan-out",
        figures={
            "events": events,
            "recipients_per_event": per_tenant,
            "emails": expected,
            "failed": failed,
            "seconds": round(span, 2),
            "emails_per_second": round(rate, 1),
            "seconds_from_start": round(waited, 2),
            # From the notifier's start: includes the consumer group's join, when little runs.
            **cpu,
        },
        baseline={
            "emails_per_second": round(bare_rate, 1),
            "what": f"bare aiosmtplib, {SENDER_CONCURRENCY} connections",
        },
        ratio=ratio,
        checks=[Check("ratio", ratio, ">=", 0.5)],
        headline=f"{rate:,.0f} e-mails/s",
        base_headline=f"{bare_rate:,.0f} e-mails/s",
        notes=[
            "timed from the first notice received to the last delivery's sent_at (excludes the consumer group's join)"
        ],
    )
    return [result]
