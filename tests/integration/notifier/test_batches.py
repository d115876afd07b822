"""A partition's batch of events handled at once does what handling them one by one does (real PostgreSQL)."""

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import UUID

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.notifier.handlers import batch_dispatcher, dispatcher
from services.notifier.keys_client import KeysClient
from shared.auth import parse_service_tokens
from shared.events import CloudEvent
from tests.fixtures.directory import Tenant
from tests.fixtures.events import deleted, detached_key_fields, expiring
from tests.fixtures.processes import ServiceProcess


@pytest.fixture
async def keys_client(nf_keys: ServiceProcess) -> AsyncIterator[KeysClient]:
    """The notifier's client of the keys service, with the notifier's token."""
    token = parse_service_tokens(os.environ["SERVICE_TOKENS"])["notifier"]
    client = KeysClient(nf_keys.url, token, timeout=5.0, recipients_ttl=1.0, organizations_ttl=1.0)
    yield client
    await client.close()


async def story(
    make_tenant: Callable[..., Awaitable[Tenant]], make_key: Callable[..., Awaitable[dict]]
) -> tuple[list[CloudEvent], dict[str, UUID]]:
    """A noticed key deleted, then announced again; a key deleted twice over (a redelivery inside the batch);
    a key announced after them all; a run of other deletions. The announced keys are known to the keys
    service (the notifier believes no other)."""
    tenant = await make_tenant(admins=1)
    a, c = await make_key(tenant), await make_key(tenant)
    b = detached_key_fields()
    others = [detached_key_fields() for _ in range(20)]
    b_deleted = deleted(b, "manual")
    events = [
        expiring(a, 30),
        b_deleted,
        deleted(a, "expired"),
        expiring(a, 14),
        b_deleted,
        *[deleted(o, "expired") for o in others],
        expiring(c, 30),
    ]
    return events, {"a": a["key_id"], "b": b["key_id"], "c": c["key_id"], "other": others[0]["key_id"]}


async def state(pool: asyncpg.Pool, keys: dict[str, UUID], events: list[CloudEvent]) -> dict:
    notices = await pool.fetch(
        "SELECT key_id, threshold_seconds, status, status_reason FROM notifier.notices WHERE key_id = ANY($1)",
        list(keys.values()),
    )
    by_key = {
        name: sorted((n["threshold_seconds"], n["status"]) for n in notices if n["key_id"] == k)
        for name, k in keys.items()
    }
    reasons = {n["status_reason"] for n in notices if n["key_id"] == keys["a"]}
    tombstones = await pool.fetch(
        "SELECT key_id, reason FROM notifier.deleted_keys WHERE key_id = ANY($1)",
        [e.data.key_id for e in events],
    )
    processed = await pool.fetchval(
        "SELECT count(*) FROM notifier.processed_events WHERE event_id = ANY($1)", [e.id for e in events]
    )
    return {
        "a": by_key["a"],
        "a_reasons": reasons,
        "b": by_key["b"],
        "c": [t for t, _ in by_key["c"]],
        "tombstones": sorted(r["reason"] for r in tombstones),
        "tombstone_of_b": next(r["reason"] for r in tombstones if r["key_id"] == keys["b"]),
        "processed": processed,
    }


def duplicates() -> float:
    return REGISTRY.get_sample_value("keyward_notifier_duplicate_events_total") or 0.0


async def test_a_batch_handled_at_once_ends_as_the_same_events_handled_one_by_one(
    nf_pool: asyncpg.Pool, keys_client: KeysClient, make_tenant, make_key
):
    one_by_one, keys_1 = await story(make_tenant, make_key)
    handle = dispatcher(nf_pool, keys_client, lambda: None)
    for event in one_by_one:
        await handle(event)

    at_once, keys_2 = await story(make_tenant, make_key)
    commits: list[int] = []
    before = duplicates()
    await batch_dispatcher(nf_pool, keys_client, lambda: commits.append(1))(at_once)

    expected = await state(nf_pool, keys_1, one_by_one)
    assert await state(nf_pool, keys_2, at_once) == expected
    # The key deleted before its 14-day notice arrived got no 14-day notice; its 30-day one was cancelled.
    assert expected["a"] == [(30 * 86400, "cancelled")]
    assert expected["a_reasons"] == {"the key was deleted (expired)"}
    assert expected["tombstone_of_b"] == "manual"
    assert expected["c"] == [30 * 86400]
    # The ledger holds the three `expiring` events; deletions need none (applied twice, they change nothing).
    assert expected["processed"] == 3
    assert commits == [1]
    assert duplicates() == before + 1

    # Redelivered whole, the batch changes nothing.
    await batch_dispatcher(nf_pool, keys_client, lambda: None)(at_once)
    assert await state(nf_pool, keys_2, at_once) == expected
    assert duplicates() == before + 1 + 3 + 1
