"""One reaper beside the keys service: expired keys go within REAPER_INTERVAL (1s here), once each."""

import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import httpx
import pytest

from shared.events import CloudEvent, KeyCreated, KeyDeleted, decode, encode
from tests.fixtures.directory import Tenant
from tests.fixtures.keys import create_key
from tests.fixtures.processes import ServiceProcess, metric
from tests.fixtures.reaper import INTERVAL, SLACK, StartReaper, deletions, lateness, remaining, wait_until_gone
from tests.fixtures.waiting import eventually, stays_true


@pytest.fixture(scope="module")
async def reaper(start_reaper: StartReaper) -> ServiceProcess:
    return await start_reaper()


async def test_keys_expiring_at_staggered_times_are_each_deleted_within_the_interval_once(
    reaper, as_admin, tenant: Tenant, pool: asyncpg.Pool, event_log
):
    keys = [await create_key(as_admin(tenant.admins[0]), tenant.orgs["org-1"]) for _ in range(5)]
    ids = [UUID(k["id"]) for k in keys]
    # 0.7s apart: a 1s poll alone would miss most of them by more than the gap.
    for n, key_id in enumerate(ids, start=1):
        await pool.execute(
            "UPDATE keys.api_keys SET expires_at = now() + interval '0.7 seconds' * $2 WHERE id = $1", key_id, n
        )
    await wait_until_gone(pool, ids, timeout=15)
    rows = await deletions(pool, ids)
    assert sorted(r["key_id"] for r in rows) == sorted(ids)
    assert {(r["actor"], r["details"]["reason"]) for r in rows} == {("system", "expired")}
    late = lateness(rows)
    print(f"staggered keys deleted {[round(s, 3) for s in sorted(late)]}s after expiry")
    assert all(0 <= s <= INTERVAL + SLACK for s in late), late

    def deleted_events(events):
        return [e for e in events if e.type == "io.keyward.apikey.deleted.v1" and e.subject in {str(i) for i in ids}]

    def one_deleted_event_each() -> bool:
        return len(deleted_events(event_log.events)) == len(ids)

    await event_log.wait_for(lambda events: len(deleted_events(events)) >= len(ids))
    await stays_true(one_deleted_event_each, for_seconds=1)  # a duplicate would arrive meanwhile
    for key_id in ids:
        events = [e for e in event_log.about(key_id) if e.type == "io.keyward.apikey.deleted.v1"]
        assert len(events) == 1, events
        assert (events[0].data.reason, events[0].data.deleted_by) == ("expired", "system")


async def test_keys_inserted_without_any_event_are_still_deleted_within_the_interval(
    reaper, bulk_keys, pool: asyncpg.Pool
):
    inserted_at = await pool.fetchval("SELECT now()")
    already = await bulk_keys(20, expires_in=-3600)
    soon = await bulk_keys(20, expires_in=1.0, step=0.05)
    await wait_until_gone(pool, already + soon, timeout=10)
    took = [(r["at"] - inserted_at).total_seconds() for r in await deletions(pool, already)]
    print(f"keys inserted already expired were deleted {max(took):.3f}s after their insertion")
    assert len(took) == len(already) and max(took) <= INTERVAL + SLACK
    late = lateness(await deletions(pool, soon))
    print(f"keys with no created event deleted {min(late):.3f}..{max(late):.3f}s after expiry")
    assert len(late) == len(soon) and all(0 <= s <= INTERVAL + SLACK for s in late), late
    # They were never in the schedule: the reconcile pass (expiry-status) found them.
    assert await pool.fetchval("SELECT count(*) FROM reaper.schedule WHERE key_id = ANY($1)", already + soon) == 0


async def test_the_schedule_follows_created_events_and_keeps_a_deleted_keys_entry_until_its_expiry(
    reaper, as_admin, tenant: Tenant, pool: asyncpg.Pool
):
    key = await create_key(as_admin(tenant.admins[0]), tenant.orgs["org-1"])
    key_id = UUID(key["id"])
    expires_at = key["expires_at"].replace("Z", "+00:00")

    async def scheduled() -> str | None:
        at = await pool.fetchval("SELECT expires_at FROM reaper.schedule WHERE key_id = $1", key_id)
        return at and at.isoformat()

    async def passed_over() -> float:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{reaper.url}/metrics")).text
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("keyward_events_passed_over_total{") and '"io.keyward.apikey.deleted.v1"' in line
        )

    await eventually(lambda: _equals(scheduled(), expires_at), timeout=10)
    before = await passed_over()
    response = await as_admin(tenant.admins[0]).delete(f"/v1/keys/{key['id']}")
    assert response.status_code == 204
    # The `deleted` event is read and passed over, undecoded: the entry stays...
    await eventually(lambda: _above(passed_over(), before), timeout=10)
    assert await scheduled() == expires_at
    # ...until its expiry, when a pass finds nothing to delete and drops it.
    await pool.execute(
        "UPDATE reaper.schedule SET expires_at = now() + interval '0.2 seconds' WHERE key_id = $1", key_id
    )
    await eventually(lambda: _equals(scheduled(), None), timeout=INTERVAL + SLACK + 0.2)


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def _above(value: Awaitable[float], floor: float) -> bool:
    return await value > floor


async def test_a_reaped_key_is_gone_and_only_its_audit_remembers_that_it_existed(
    reaper, as_admin, tenant: Tenant, pool: asyncpg.Pool
):
    key = await create_key(as_admin(tenant.admins[0]), tenant.orgs["org-1"])
    key_id = UUID(key["id"])
    secret = await pool.fetchrow("SELECT digest, ciphertext FROM keys.api_keys WHERE id = $1", key_id)
    await pool.execute("UPDATE keys.api_keys SET expires_at = now() + interval '0.2 seconds' WHERE id = $1", key_id)
    await wait_until_gone(pool, [key_id], timeout=5)

    [audit] = await deletions(pool, [key_id])
    assert (audit["key_name"], str(audit["organization_id"])) == (key["name"], key["organization_id"])
    assert audit["details"]["created_at"] and audit["details"]["expires_at"]
    assert audit["details"]["reason"] == "expired"
    # Nothing in any table of the database holds the key, its digest or its ciphertext any more.
    # (bytea columns print as hex, so the key's own bytes are looked for in hex too.)
    traces = [key["key"], key["key"].encode().hex(), secret["digest"].hex(), secret["ciphertext"].hex()]
    tables = await pool.fetch(
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    )
    assert {(t["schemaname"], t["tablename"]) for t in tables} >= {("keys", "api_keys"), ("keys", "audit_log")}
    for table in tables:
        found = await pool.fetchval(
            f'SELECT count(*) FROM "{table["schemaname"]}"."{table["tablename"]}" t '
            "WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) s WHERE strpos(t::text, s) > 0)",
            traces,
        )
        assert found == 0, f"{table['schemaname']}.{table['tablename']} still holds a trace of the key"
    assert await remaining(pool, [key_id]) == 0


async def outbox_events(pool: asyncpg.Pool, key_id: UUID) -> dict[str, tuple[CloudEvent, list[str]]]:
    """The key's events in the outbox, by type, each with its header names."""
    rows = await pool.fetch(
        "SELECT message_key, headers, payload FROM keys.outbox WHERE headers @> $1::jsonb ORDER BY id",
        [["ce_subject", str(key_id)]],
    )
    out = {}
    for row in rows:
        headers = [(name, value.encode()) for name, value in row["headers"]]
        event = decode(row["message_key"], row["payload"], headers)
        out[event.type] = (event, sorted(name for name, _ in headers))
    return out


async def test_a_reaped_keys_deleted_event_and_audit_are_written_as_for_any_other_deletion(
    reaper, as_admin, tenant: Tenant, pool: asyncpg.Pool
):
    """PostgreSQL writes a reap's events and audit rows; they must read exactly as the ones Python writes."""
    key = await create_key(as_admin(tenant.admins[0]), tenant.orgs["org-1"])
    key_id = UUID(key["id"])
    await pool.execute("UPDATE keys.api_keys SET expires_at = now() + interval '0.2 seconds' WHERE id = $1", key_id)
    expires_at = await pool.fetchval("SELECT expires_at FROM keys.api_keys WHERE id = $1", key_id)
    await wait_until_gone(pool, [key_id], timeout=5)

    events = await outbox_events(pool, key_id)
    (created, _), (deleted, header_names) = events[KeyCreated.type], events[KeyDeleted.type]
    python_wrote = CloudEvent.of(
        KeyDeleted(**{**created.data.model_dump(), "expires_at": expires_at}, reason="expired", deleted_by="system")
    )
    assert deleted.data == python_wrote.data
    assert (deleted.source, deleted.subject, deleted.partition_key) == (
        python_wrote.source,
        python_wrote.subject,
        python_wrote.partition_key,
    )
    assert UUID(deleted.id) != UUID(created.id)
    assert abs((deleted.time - datetime.now(UTC)).total_seconds()) < 30
    assert header_names == sorted(name for name, _ in encode(python_wrote)[2])

    [audit] = await deletions(pool, [key_id])
    assert audit["details"]["reason"] == "expired"
    assert datetime.fromisoformat(audit["details"]["expires_at"]) == expires_at
    assert datetime.fromisoformat(audit["details"]["created_at"]) == created.data.created_at


async def test_the_reaper_reports_health_readiness_and_its_figures(reaper, bulk_keys, pool: asyncpg.Pool):
    before = await metric(reaper, "keyward_reaper_keys_reaped_total")
    ids = await bulk_keys(7)
    await wait_until_gone(pool, ids, timeout=5)
    async with httpx.AsyncClient(base_url=reaper.url) as client:
        health = await client.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "keys": "ok", "kafka": "ok"}

    async def counted() -> bool:  # the counter is bumped once the answer is read
        return await metric(reaper, "keyward_reaper_keys_reaped_total") >= before + 7

    await eventually(counted, timeout=5)
    assert await metric(reaper, "keyward_reaper_oldest_expired_key_age_seconds") < INTERVAL + SLACK
    assert time.time() - await metric(reaper, "keyward_reaper_last_success_timestamp_seconds") < 5
