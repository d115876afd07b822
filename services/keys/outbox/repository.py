"""Every SQL statement of the outbox: events written with the change they announce, read and marked by the relay."""

from collections.abc import Sequence

import asyncpg
import orjson

from shared.events import CloudEvent, encode


async def add_events(conn: asyncpg.Connection, topic: str, events: Sequence[CloudEvent]) -> None:
    """Writes events to the outbox, inside the caller's transaction, in their order, in one statement."""
    keys, headers, payloads = [], [], []
    for event in events:
        message_key, payload, event_headers = encode(event)
        keys.append(message_key)
        headers.append(orjson.dumps([[name, value.decode()] for name, value in event_headers]).decode())
        payloads.append(payload)
    await conn.execute(
        """
        INSERT INTO keys.outbox (topic, message_key, headers, payload)
        SELECT $1, e.message_key, e.headers::jsonb, e.payload
        FROM unnest($2::bytea[], $3::text[], $4::bytea[]) WITH ORDINALITY AS e(message_key, headers, payload, n)
        ORDER BY e.n
        """,
        topic,
        keys,
        headers,
        payloads,
    )


async def unsent_events(conn: asyncpg.Connection, limit: int, in_flight: Sequence[int]) -> list[asyncpg.Record]:
    """The oldest unsent events but those `in_flight` (queued for Kafka, not yet marked sent)."""
    return await conn.fetch(
        """
        SELECT id, topic, message_key, headers, payload, created_at FROM keys.outbox
        WHERE sent_at IS NULL AND id <> ALL($2::bigint[]) ORDER BY id LIMIT $1
        """,
        limit,
        list(in_flight),
    )


async def mark_sent(conn: asyncpg.Connection, ids: list[int]) -> None:
    await conn.execute("UPDATE keys.outbox SET sent_at = clock_timestamp() WHERE id = ANY($1::bigint[])", ids)


async def outbox_backlog(conn: asyncpg.Connection) -> asyncpg.Record:
    return await conn.fetchrow(
        """
        SELECT count(*) AS backlog, coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS oldest_age
        FROM keys.outbox WHERE sent_at IS NULL
        """
    )


async def purge_sent(conn: asyncpg.Connection, older_than_seconds: float, limit: int = 10000) -> int:
    status = await conn.execute(
        """
        DELETE FROM keys.outbox WHERE id IN (
            SELECT id FROM keys.outbox WHERE sent_at < now() - make_interval(secs => $1) LIMIT $2
        )
        """,
        older_than_seconds,
        limit,
    )
    return int(status.split()[-1])
