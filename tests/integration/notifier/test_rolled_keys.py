"""A rolled key's reminders (issue 21): they go on, saying that a successor exists, until the successor's first
verify; none after. The keys service records that verify (tests/integration/keys/test_roll.py); here its
record is written as the keys service writes it."""

from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import httpx

from tests.fixtures.events import Publisher, expiring, store_key
from tests.fixtures.mail import Received, Sink
from tests.fixtures.notifier import notices, wait_for_notices
from tests.fixtures.waiting import stays_true


async def roll(pool: asyncpg.Pool, predecessor: dict) -> dict:
    """The predecessor linked to a new successor of the same name, as a roll leaves them."""
    async with pool.acquire() as conn, conn.transaction():
        successor = predecessor | {"key_id": uuid4(), "created_at": datetime.now(UTC)}
        await conn.execute(
            "UPDATE keys.api_keys SET replaced_by = $2 WHERE id = $1", predecessor["key_id"], successor["key_id"]
        )
        await store_key(conn, successor)
        await conn.execute(
            "UPDATE keys.api_keys SET replaces = $2 WHERE id = $1", successor["key_id"], predecessor["key_id"]
        )
    return successor


def text(received: Received) -> str:
    return str(received.message.get_body(("plain",)).get_content())


async def first_verify(pool: asyncpg.Pool, key: dict) -> None:
    await pool.execute("UPDATE keys.api_keys SET first_used_at = now() WHERE id = $1", key["key_id"])


async def test_a_rolled_key_is_reminded_until_its_successors_first_verify_and_not_after(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_pool: asyncpg.Pool, notices_api: httpx.AsyncClient
):
    tenant = await make_tenant(admins=2)
    old = await make_key(tenant, days=7)
    await publish.event(expiring(old, 14))
    await sink.wait_for(lambda: len(sink.about(old["key_id"])) == 2)
    assert all("already replaces it" not in text(m) for m in sink.about(old["key_id"]))

    new = await roll(nf_pool, old)
    await publish.event(expiring(old, 7))
    await sink.wait_for(lambda: len(sink.about(old["key_id"])) == 4)
    reminders = [m for m in sink.about(old["key_id"]) if m.threshold == 7 * 86400]
    assert len(reminders) == 2
    for m in reminders:
        assert "already replaces it" in text(m) and f"/keys/{new['key_id']}" in text(m)

    await first_verify(nf_pool, new)
    await publish.event(expiring(old, 3))
    sentinel = await make_key(tenant, days=3)  # same tenant, same partition: consumed after `after`
    await publish.event(expiring(sentinel, 3))
    await sink.wait_for(lambda: len(sink.about(sentinel["key_id"])) == 2)
    assert len(sink.about(old["key_id"])) == 4
    assert {n["threshold_seconds"] for n in await notices(notices_api, old["key_id"])} == {14 * 86400, 7 * 86400}


async def test_a_reminder_waiting_to_be_sent_is_cancelled_once_the_successor_is_in_use(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_pool: asyncpg.Pool, notices_api: httpx.AsyncClient
):
    tenant = await make_tenant(admins=1)
    old = await make_key(tenant, days=3)
    new = await roll(nf_pool, old)
    sink.stop()
    try:
        await publish.event(expiring(old, 3))
        # Recorded (the successor not yet in use), and retried while the SMTP server is away.
        await wait_for_notices(notices_api, old["key_id"], lambda items: any(i["attempts"] >= 1 for i in items))
        await first_verify(nf_pool, new)
    finally:
        sink.start()
    await wait_for_notices(notices_api, old["key_id"], lambda items: all(i["status"] == "cancelled" for i in items))
    await stays_true(lambda: sink.about(old["key_id"]) == [], for_seconds=2.5)
