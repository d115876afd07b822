"""A mass expiry is spread over REAPER_SPREAD rather than deleted all at once, and is still gone in time."""

from datetime import timedelta

import asyncpg

from tests.fixtures.reaper import StartReaper, deletions, lateness, wait_until_gone

SPREAD = 3
SLACK = 1.5


async def test_a_mass_expiry_is_deleted_at_an_even_pace_and_gone_the_spread_after_it_expired(
    start_reaper: StartReaper, bulk_keys, pool: asyncpg.Pool
):
    # Inserted with no `created` event: the reaper's first pass learns their expiry from the keys service.
    ids = await bulk_keys(3000, expires_in=2.0)
    await start_reaper(reaper_interval="10s", reaper_spread=f"{SPREAD}s", reaper_batch_size="200")
    await wait_until_gone(pool, ids, timeout=10 + SPREAD)

    rows = await deletions(pool, ids)
    late = lateness(rows)
    print(f"3,000 keys expiring together deleted {min(late):.2f}..{max(late):.2f}s after expiry")
    assert len(rows) == len(ids)
    assert max(late) <= SPREAD + SLACK, late
    # At full speed 3,000 keys go in a fraction of a second (15 batches); paced, the batches span most of
    # the spread, and no second deleted much more than its share.
    batches = sorted({r["at"] for r in rows})
    assert batches[-1] - batches[0] >= timedelta(seconds=SPREAD / 2)
    first_second = sum(1 for r in rows if r["at"] < batches[0] + timedelta(seconds=1))
    assert first_second <= 0.6 * len(ids), first_second
