"""Exactly one e-mail per (key, threshold, recipient): through redeliveries, crashes and replicas."""

import asyncio
import threading
from collections import Counter

import asyncpg
import httpx

from tests.fixtures.directory import Tenant
from tests.fixtures.events import Publisher, expiring
from tests.fixtures.mail import Sink, email_of
from tests.fixtures.notifier import CLAIM_TIMEOUT_SECONDS, Notifier, wait_for_notices
from tests.fixtures.waiting import stays_true


def copies(sink: Sink, key_id: object) -> Counter[tuple[str, int]]:
    return Counter((m.rcpt_tos[0], m.threshold) for m in sink.about(key_id))


async def test_a_redelivered_event_sends_no_second_email(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_pool: asyncpg.Pool, notifier: Notifier
):
    tenant = await make_tenant(admins=2)
    fields = await make_key(tenant)
    event = expiring(fields, 30)
    await publish.event(event)
    await publish.event(event)
    sentinel = await make_key(tenant)
    await publish.event(expiring(sentinel, 30))
    await sink.wait_for(lambda: len(sink.about(sentinel["key_id"])) == 2)
    once_each = Counter({(email_of(a), 30 * 86400): 1 for a in tenant.admins})
    await stays_true(lambda: copies(sink, fields["key_id"]) == once_each, for_seconds=0.5)
    assert await nf_pool.fetchval("SELECT count(*) FROM notifier.processed_events WHERE event_id = $1", event.id) == 1
    async with httpx.AsyncClient(base_url=notifier.url) as client:
        metrics = (await client.get("/metrics")).text
    (dropped,) = [line for line in metrics.splitlines() if line.startswith("keyward_notifier_duplicate_events_total ")]
    assert float(dropped.split()[1]) >= 1


async def test_a_notifier_killed_in_the_middle_of_a_fanout_still_sends_exactly_one_email_each(
    publish: Publisher, sink: Sink, make_tenant, make_key, notifier: Notifier, notices_api: httpx.AsyncClient
):
    tenant = await make_tenant(admins=50)
    addresses = {email_of(a) for a in tenant.admins}
    fields = await make_key(tenant, days=7)
    killed = threading.Event()

    def kill_during_the_21st_send(address: str) -> None:
        # The notifier has claimed this delivery and waits for the server's answer: SIGKILL it right there.
        accepted = sum(1 for m in sink.about(fields["key_id"]))
        if address in addresses and accepted == 20 and not killed.is_set():
            notifier.process.kill()
            killed.set()

    sink.handler.delay = 0.05
    sink.handler.on_rcpt = kill_during_the_21st_send
    await publish.event(expiring(fields, 7))
    await sink.wait_for(killed.is_set)
    assert len(sink.about(fields["key_id"])) == 20
    sink.handler.on_rcpt = None

    await notifier.restart()
    # The crashed claims are retried once NOTICE_CLAIM_TIMEOUT has passed; the rest as soon as the lease lapses.
    items = await wait_for_notices(
        notices_api,
        fields["key_id"],
        lambda items: len(items) == 50 and all(i["status"] == "sent" for i in items),
        timeout=CLAIM_TIMEOUT_SECONDS + 30,
    )
    once_each = Counter({(a, 7 * 86400): 1 for a in addresses})
    await stays_true(lambda: copies(sink, fields["key_id"]) == once_each, for_seconds=0.5)
    # Two claims were open at the crash: the send in flight and the next delivery, claimed while it was on
    # the wire. Both are retried after the claim timeout, each counting a second attempt; no other is.
    assert sorted(i["attempts"] for i in items) == [1] * 48 + [2, 2]


async def test_a_notifier_stopped_in_the_middle_of_a_fanout_finishes_the_send_in_flight_and_leaves_the_rest(
    publish: Publisher, sink: Sink, make_tenant, make_key, notifier: Notifier, nf_pool: asyncpg.Pool
):
    tenant = await make_tenant(admins=20)
    fields = await make_key(tenant, days=7)
    sink.handler.delay = 0.1
    await publish.event(expiring(fields, 7))
    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) >= 5)
    stopping = asyncio.create_task(notifier.process.stop())
    await asyncio.sleep(0.02)  # SIGTERM sent while a send waits for the slow server's answer
    await stopping
    states = await nf_pool.fetch(
        "SELECT status, count(*) AS n FROM notifier.deliveries WHERE key_id = $1 GROUP BY status", fields["key_id"]
    )
    by_status = {r["status"]: r["n"] for r in states}
    assert "sending" not in by_status, by_status
    assert by_status["sent"] == len(sink.about(fields["key_id"])) < 20

    await notifier.restart()
    await sink.wait_for(lambda: len(sink.about(fields["key_id"])) == 20)
    once_each = Counter({(email_of(a), 7 * 86400): 1 for a in tenant.admins})
    await stays_true(lambda: copies(sink, fields["key_id"]) == once_each, for_seconds=0.5)
    # The delivery claimed ahead of the stop was given back, not counted as an attempt.
    attempts = await nf_pool.fetch("SELECT attempts FROM notifier.deliveries WHERE key_id = $1", fields["key_id"])
    assert [r["attempts"] for r in attempts] == [1] * 20


async def test_a_stopping_notifier_gives_back_the_notices_it_leased_ahead(
    publish: Publisher, sink: Sink, make_tenant, make_key, notifier: Notifier, nf_pool: asyncpg.Pool
):
    # A tenant each: eight notices of one tenant falling due together would go out as one digest.
    tenants = [await make_tenant(admins=2) for _ in range(8)]
    keys = [await make_key(tenant, days=3) for tenant in tenants]
    sink.handler.delay = 0.3
    for fields in keys:
        await publish.event(expiring(fields, 3))
    key_ids = [k["key_id"] for k in keys]
    leased = """SELECT count(*) FROM notifier.notices
                WHERE key_id = ANY($1::uuid[]) AND status = 'open' AND next_check_at > now()"""
    # Four fan-outs under way (SENDER_CONCURRENCY) and four more leased, waiting for a free slot.
    deadline = asyncio.get_running_loop().time() + 20
    while await nf_pool.fetchval(leased, key_ids) < 8:
        assert asyncio.get_running_loop().time() < deadline, "the notifier did not lease ahead"
        await asyncio.sleep(0.05)

    await notifier.process.stop()
    untouched = await nf_pool.fetch(
        """SELECT n.next_check_at <= now() AS free FROM notifier.notices n
           WHERE n.key_id = ANY($1::uuid[]) AND NOT EXISTS (
               SELECT 1 FROM notifier.deliveries d WHERE d.key_id = n.key_id AND d.status <> 'pending')""",
        key_ids,
    )
    assert untouched, "every notice was started before the stop"
    assert all(r["free"] for r in untouched)

    await notifier.restart()
    await sink.wait_for(lambda: sum(len(sink.about(k)) for k in key_ids) == 16)

    def once_each(tenant: Tenant) -> Counter[tuple[str, int]]:
        return Counter({(email_of(a), 3 * 86400): 1 for a in tenant.admins})

    await stays_true(
        lambda: all(copies(sink, k) == once_each(t) for k, t in zip(key_ids, tenants, strict=True)), for_seconds=0.5
    )


async def test_two_notifier_replicas_never_send_a_duplicate(
    publish: Publisher, sink: Sink, make_tenant, make_key, notifier: Notifier, nf_pool: asyncpg.Pool
):
    second = await notifier.replica()
    try:
        tenants = [await make_tenant(admins=12) for _ in range(6)]
        # Slow enough that the work outlasts a poll of the second replica's sender: both take part.
        sink.handler.delay = 0.05
        keys = [await make_key(t) for t in tenants for _ in range(2)]
        for fields in keys:
            await publish.event(expiring(fields, 30))
        expected = sum(len(t.admins) for t in tenants) * 2
        await sink.wait_for(lambda: sum(len(sink.about(k["key_id"])) for k in keys) >= expected, timeout=60)
        owners_of = [t for t in tenants for _ in range(2)]

        def one_email_each() -> bool:
            return all(
                copies(sink, fields["key_id"]) == Counter({(email_of(a), 30 * 86400): 1 for a in tenant.admins})
                for fields, tenant in zip(keys, owners_of, strict=True)
            )

        await stays_true(one_email_each, for_seconds=1)
        owners = await nf_pool.fetchval(
            "SELECT count(DISTINCT claimed_by) FROM notifier.deliveries WHERE key_id = ANY($1::uuid[])",
            [k["key_id"] for k in keys],
        )
        assert owners == 2
    finally:
        await second.stop()
