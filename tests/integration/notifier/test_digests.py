"""Digests (issue 21): an administrator who would get more than NOTICE_DIGEST_MIN (3) notices falling due
within NOTICE_DIGEST_WINDOW (10m) gets one e-mail listing them; the ledger still holds each (key, threshold,
administrator) once, and a crash mid-digest sends the digest again, never single e-mails instead."""

import asyncio
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import httpx
import pytest

from tests.fixtures.events import Publisher, expiring, key_fields, store_key
from tests.fixtures.mail import Received, Sink, email_of
from tests.fixtures.notifier import CLAIM_TIMEOUT_SECONDS, Notifier
from tests.fixtures.waiting import stays_true

WEEK = 7 * 86400


def digests_to(sink: Sink, addresses: set[str], key_ids: list[UUID]) -> list[Received]:
    """The digests the sink kept for these addresses that list any of these keys."""
    wanted = {str(k) for k in key_ids}
    return [m for m in sink.all() if m.digest_id and m.rcpt_tos[0] in addresses and wanted & set(m.rolled_key_ids())]


def singles(sink: Sink, key_ids: list[UUID]) -> list[Received]:
    return [m for k in key_ids for m in sink.about(k)]


async def ledger(pool: asyncpg.Pool, key_ids: list[UUID]) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT key_id, threshold_seconds, recipient, status, digest_id, attempts FROM notifier.deliveries
           WHERE key_id = ANY($1::uuid[])""",
        key_ids,
    )


async def test_ten_keys_of_one_tenant_crossing_a_threshold_together_give_each_administrator_one_digest(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_pool: asyncpg.Pool, notifier: Notifier
):
    tenant = await make_tenant(admins=3)
    addresses = {email_of(a) for a in tenant.admins}
    # Expiring an hour apart, announced together (one watcher pass, one batch of events).
    keys = [await make_key(tenant, days=7) for _ in range(10)]
    key_ids = [k["key_id"] for k in keys]
    await publish.batch([expiring(k, 7) for k in keys])

    await sink.wait_for(lambda: len(digests_to(sink, addresses, key_ids)) >= 3)
    await stays_true(
        lambda: len(digests_to(sink, addresses, key_ids)) == 3 and not singles(sink, key_ids), for_seconds=2
    )
    received = digests_to(sink, addresses, key_ids)
    assert sorted(m.rcpt_tos[0] for m in received) == sorted(addresses)
    soonest_first = [str(k["key_id"]) for k in sorted(keys, key=lambda k: k["expires_at"])]
    for message in received:
        assert message.rolled_key_ids() == soonest_first
        assert message.message["Subject"].startswith("[Keyward] 10 API keys of ")
        text = message.message.get_body(("plain",)).get_content()
        assert all(k["name"] in text and k["key_display"] in text for k in keys)
    assert len({m.digest_id for m in received}) == 1
    assert len({m.message["Message-ID"] for m in received}) == 3

    # The ledger: each (key, threshold, administrator) once, sent, accounted to that one digest.
    rows = await ledger(nf_pool, key_ids)
    assert Counter((r["key_id"], r["threshold_seconds"], r["recipient"]) for r in rows) == Counter(
        {(k, WEEK, a): 1 for k in key_ids for a in tenant.admins}
    )
    assert {(r["status"], str(r["digest_id"]), r["attempts"]) for r in rows} == {("sent", received[0].digest_id, 1)}
    notices = await nf_pool.fetch("SELECT status FROM notifier.notices WHERE key_id = ANY($1::uuid[])", key_ids)
    assert [n["status"] for n in notices] == ["done"] * 10


async def test_three_keys_crossing_together_still_give_three_single_notices_each(
    publish: Publisher, sink: Sink, make_tenant, make_key
):
    tenant = await make_tenant(admins=2)
    keys = [await make_key(tenant, days=7) for _ in range(3)]
    key_ids = [k["key_id"] for k in keys]
    await publish.batch([expiring(k, 7) for k in keys])
    await sink.wait_for(lambda: len(singles(sink, key_ids)) == 6)
    await stays_true(lambda: len(singles(sink, key_ids)) == 6, for_seconds=1)
    assert not digests_to(sink, {email_of(a) for a in tenant.admins}, key_ids)
    assert Counter((m.rcpt_tos[0], m.key_id) for m in singles(sink, key_ids)) == Counter(
        {(email_of(a), str(k)): 1 for a in tenant.admins for k in key_ids}
    )


@pytest.mark.parametrize("kill_at", ["rcpt", "data"])
async def test_a_notifier_killed_in_the_middle_of_a_digest_still_sends_each_administrator_the_digest(
    kill_at: str, publish: Publisher, sink: Sink, make_tenant, make_key, notifier: Notifier, nf_pool: asyncpg.Pool
):
    """Killed as the third administrator's digest is on the wire: at RCPT (the server never takes it), or once
    the server has kept it but before its 250 reaches the notifier (the window in which a repeat is documented)."""
    tenant = await make_tenant(admins=5)
    addresses = {email_of(a) for a in tenant.admins}
    keys = [await make_key(tenant, days=7) for _ in range(10)]
    key_ids = [k["key_id"] for k in keys]
    killed = threading.Event()
    victim: list[str] = []

    def kill(address: str, kept_before: int) -> None:
        # The notifier has claimed this administrator's deliveries and waits for the server: SIGKILL it there.
        if address in addresses and len(digests_to(sink, addresses, key_ids)) == kept_before and not killed.is_set():
            victim.append(address)
            notifier.process.kill()
            killed.set()

    sink.handler.delay = 0.05
    if kill_at == "rcpt":
        sink.handler.on_rcpt = lambda address: kill(address, kept_before=2)
    else:
        sink.handler.on_data = lambda m: kill(m.rcpt_tos[0], kept_before=3) if m.digest_id else None
    await publish.batch([expiring(k, 7) for k in keys])
    await sink.wait_for(killed.is_set)
    sink.handler.on_rcpt = sink.handler.on_data = None
    kept_at_the_kill = 3 if kill_at == "data" else 2
    assert len(digests_to(sink, addresses, key_ids)) == kept_at_the_kill

    await notifier.restart()
    # The crashed claim is retried once NOTICE_CLAIM_TIMEOUT has passed; the rest as soon as the lease lapses.
    await sink.wait_for(
        lambda: (
            {m.rcpt_tos[0] for m in digests_to(sink, addresses, key_ids)} == addresses
            and len(digests_to(sink, addresses, key_ids)) >= 5
        ),
        timeout=CLAIM_TIMEOUT_SECONDS + 30,
    )

    async def settled() -> bool:
        rows = await ledger(nf_pool, key_ids)
        return len(rows) == 50 and all(r["status"] == "sent" for r in rows)

    deadline = asyncio.get_running_loop().time() + 10
    while not await settled():
        assert asyncio.get_running_loop().time() < deadline, await ledger(nf_pool, key_ids)
        await asyncio.sleep(0.1)

    copies = Counter(m.rcpt_tos[0] for m in digests_to(sink, addresses, key_ids))
    expected = Counter({a: 1 for a in addresses})
    if kill_at == "data":
        expected[victim[0]] = 2  # kept by the server, never recorded: sent again, once
    await stays_true(
        lambda: (
            Counter(m.rcpt_tos[0] for m in digests_to(sink, addresses, key_ids)) == expected
            and not singles(sink, key_ids)
        ),
        for_seconds=1,
    )
    assert copies == expected
    received = digests_to(sink, addresses, key_ids)
    # Whole digests only, each listing the ten; a repeat carries the first copy's Message-ID.
    assert all(len(m.rolled_key_ids()) == 10 for m in received)
    assert len({m.digest_id for m in received}) == 1
    ids = Counter(m.message["Message-ID"] for m in received)
    assert len(ids) == 5 and sorted(ids.values()) == sorted(expected.values())
    rows = await ledger(nf_pool, key_ids)
    attempts = Counter(r["recipient"] for r in rows if r["attempts"] == 2)
    # The crashed claim: each of the victim's ten deliveries counted a second attempt; no other did.
    assert attempts == Counter({a: 10 for a in tenant.admins if email_of(a) == victim[0]})


async def test_keys_expiring_together_give_one_digest_per_administrator_at_each_threshold_the_keys_service_announces(
    nf_pool: asyncpg.Pool, sink: Sink, make_tenant, notifier: Notifier
):
    """The whole path: the keys service's watcher announces the ten keys' crossing in one pass, its relay
    publishes them, the notifier records them together. KEY_LIFETIME=60s, thresholds 30s,14s,7s,3s,1s."""
    tenant = await make_tenant(admins=2)
    addresses = {email_of(a) for a in tenant.admins}
    expires_at = datetime.now(UTC) + timedelta(seconds=20)  # past the 30s threshold: announced at once
    keys = []
    async with nf_pool.acquire() as conn:
        for _ in range(10):
            fields = key_fields(tenant) | {"expires_at": expires_at, "created_at": expires_at - timedelta(seconds=60)}
            keys.append(await store_key(conn, fields))
    key_ids = [k["key_id"] for k in keys]

    await sink.wait_for(lambda: len(digests_to(sink, addresses, key_ids)) == 10, timeout=40)
    await stays_true(
        lambda: len(digests_to(sink, addresses, key_ids)) == 10 and not singles(sink, key_ids), for_seconds=1.5
    )
    received = digests_to(sink, addresses, key_ids)
    assert Counter(m.rcpt_tos[0] for m in received) == Counter({a: 5 for a in addresses})
    assert all(sorted(m.rolled_key_ids()) == sorted(str(k) for k in key_ids) for m in received)
    rows = await ledger(nf_pool, key_ids)
    assert sorted({r["threshold_seconds"] for r in rows}) == [1, 3, 7, 14, 30]
    assert len(rows) == 10 * 5 * 2 and all(r["status"] == "sent" for r in rows)
    # A digest per threshold.
    assert len({r["digest_id"] for r in rows}) == 5


async def test_an_administrator_removed_while_a_digest_goes_out_gets_none_and_their_deliveries_are_cancelled(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_pool: asyncpg.Pool
):
    """The digest goes to the directory as it stands when each e-mail goes out (RECIPIENTS_CACHE_TTL=1s here),
    as a single notice does."""
    tenant = await make_tenant(admins=6)
    leaving = max(tenant.admins)  # the digest goes to the administrators in the order of their usernames
    addresses = {email_of(a) for a in tenant.admins}
    keys = [await make_key(tenant, days=7) for _ in range(5)]
    key_ids = [k["key_id"] for k in keys]
    sink.handler.delay = 0.5
    await publish.batch([expiring(k, 7) for k in keys])
    await sink.wait_for(lambda: len(digests_to(sink, addresses, key_ids)) >= 1)
    await nf_pool.execute("DELETE FROM keys.administrators WHERE username = $1", leaving)

    await sink.wait_for(lambda: len(digests_to(sink, addresses, key_ids)) == 5)
    await stays_true(lambda: len(digests_to(sink, addresses, key_ids)) == 5, for_seconds=1.5)
    assert email_of(leaving) not in {m.rcpt_tos[0] for m in digests_to(sink, addresses, key_ids)}
    rows = await ledger(nf_pool, key_ids)
    assert {r["status"] for r in rows if r["recipient"] == leaving} == {"cancelled"}
    assert {r["status"] for r in rows if r["recipient"] != leaving} == {"sent"}


async def test_a_digest_refused_for_now_is_retried_whole_and_one_refused_for_good_is_failed_for_all_its_keys(
    publish: Publisher, sink: Sink, make_tenant, make_key, nf_pool: asyncpg.Pool, notifier: Notifier
):
    tenant = await make_tenant(admins=3)
    later, never, fine = (email_of(a) for a in tenant.admins)
    addresses = {later, never, fine}
    keys = [await make_key(tenant, days=7) for _ in range(4)]
    key_ids = [k["key_id"] for k in keys]
    sink.handler.refuse[later] = "451 4.3.0 Try again later"
    sink.handler.refuse[never] = "550 5.1.1 No such user here"
    await publish.batch([expiring(k, 7) for k in keys])

    async def attempts_of(address: str) -> list[int]:
        rows = await ledger(nf_pool, key_ids)
        return [r["attempts"] for r in rows if email_of(r["recipient"]) == address]

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while sink.handler.rcpts.count(later) < 2:  # refused twice (NOTICE_RETRY_INITIAL=1s): retried as a whole
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    sink.handler.refuse.pop(later)
    await sink.wait_for(lambda: {m.rcpt_tos[0] for m in digests_to(sink, addresses, key_ids)} == {later, fine})
    await stays_true(lambda: len(digests_to(sink, addresses, key_ids)) == 2, for_seconds=2.5)

    rows = await ledger(nf_pool, key_ids)
    by_address = {a: {(r["status"]) for r in rows if email_of(r["recipient"]) == a} for a in addresses}
    assert by_address == {later: {"sent"}, never: {"failed"}, fine: {"sent"}}
    # A digest's deliveries move together: the same attempts for all of one administrator's keys.
    assert len(set(await attempts_of(later))) == 1 and (await attempts_of(later))[0] >= 3
    assert await attempts_of(never) == [1] * 4 and await attempts_of(fine) == [1] * 4
    assert sink.handler.rcpts.count(never) == 1
    assert not singles(sink, key_ids)
    async with httpx.AsyncClient(base_url=notifier.url) as client:
        metrics = (await client.get("/metrics")).text
    assert 'keyward_notifier_emails_failed_total{kind="permanent",threshold="digest"}' in metrics
    assert "keyward_notifier_digests_sent_total" in metrics
