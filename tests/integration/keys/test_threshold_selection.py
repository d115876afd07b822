"""Which threshold the watcher announces, for every position of a key against the thresholds.

The rule lives in one SQL statement (repository.announce_expiring) so that it is atomic across replicas;
this table checks that statement directly, without the watcher's timing.
"""

import pytest

from services.keys import repository
from tests.fixtures.directory import Tenant
from tests.fixtures.keys import create_key

DAY = 86400
THRESHOLDS = [30 * DAY, 14 * DAY, 7 * DAY, 3 * DAY, 1 * DAY]


@pytest.mark.parametrize(
    ("seconds_left", "already_noticed", "announced"),
    [
        (40 * DAY, None, None),  # no threshold crossed yet
        (30 * DAY - 60, None, 30 * DAY),  # just crossed 30d
        (29 * DAY, 30 * DAY, None),  # 30d already announced
        (13 * DAY, 30 * DAY, 14 * DAY),  # the next one
        (2 * DAY, 30 * DAY, 3 * DAY),  # after downtime: only the most imminent, not 14d and 7d as well
        (10 * DAY, None, 14 * DAY),  # created with less time left than 30d
        (0.5 * DAY, None, 1 * DAY),
        (0.5 * DAY, 1 * DAY, None),  # the last notice went out
        (5 * DAY, 3 * DAY, None),  # never go back to a larger threshold
        (-60, None, None),  # expired: nothing to announce, the reaper's business
    ],
)
async def test_the_most_imminent_crossed_threshold_is_announced_once(
    as_admin, tenant: Tenant, pool, seconds_left, already_noticed, announced
):
    key = await create_key(as_admin(tenant.admins[0]), tenant.id)
    async with pool.acquire() as conn:
        # Rolled back at the end: the running app's watcher must never publish these made-up states (it
        # skips the rows this transaction holds).
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(
                """
                UPDATE keys.api_keys SET created_at = now() - interval '400 days',
                    expires_at = now() + make_interval(secs => $2), noticed_threshold_seconds = $3
                WHERE id = $1
                """,
                key["id"],
                seconds_left,
                already_noticed,
            )
            rows = await repository.announce_expiring(conn, THRESHOLDS, 100_000)
            assert [r["threshold"] for r in rows if str(r["id"]) == key["id"]] == ([announced] if announced else [])
            again = await repository.announce_expiring(conn, THRESHOLDS, 100_000)
            assert key["id"] not in {str(r["id"]) for r in again}
        finally:
            await transaction.rollback()
