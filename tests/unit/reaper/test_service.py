import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from services.reaper import service
from services.reaper.schemas import ExpiryStatus, ReapResult
from services.reaper.service import MIN_PAUSE, Reaper
from tests.fixtures.waiting import stays_true

T0 = datetime(2030, 1, 1, tzinfo=UTC)
INTERVAL = timedelta(seconds=60)


class FakeKeys:
    def __init__(self, statuses: list[ExpiryStatus], batches: list[int], limit: int = 10) -> None:
        self.statuses = statuses
        self.batches = batches
        self.limit = limit
        self.reap_calls = 0
        self.limits: set[int] = set()
        self.status_calls = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def expiry_status(self) -> ExpiryStatus:
        self.status_calls += 1
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    async def reap(self, limit: int) -> ReapResult:
        self.reap_calls += 1
        self.limits.add(limit)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        deleted = self.batches.pop(0) if self.batches else 0
        if deleted < 0:
            raise RuntimeError("keys service answered 503")
        return ReapResult(deleted=deleted, more=deleted == limit)


class FakeSchedule:
    def __init__(self, next_expiry: datetime | None = None) -> None:
        self.next = next_expiry
        self.forgotten_until: list[datetime] = []

    async def next_expiry(self) -> datetime | None:
        return self.next

    async def forget_until(self, until: datetime) -> int:
        self.forgotten_until.append(until)
        return 0


def status(
    oldest: datetime | None = None, upcoming: datetime | None = None, now: datetime = T0, expired: int = 0
) -> ExpiryStatus:
    return ExpiryStatus(oldest_expired_at=oldest, next_expiry_at=upcoming, now=now, expired=expired)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def reaper(keys: FakeKeys, schedule: FakeSchedule | None = None, **kwargs) -> Reaper:
    options = {"interval": INTERVAL, "batch_size": keys.limit, "concurrency": 3} | kwargs
    return Reaper(keys, schedule or FakeSchedule(), **options)


def test_the_next_wake_is_the_first_known_expiry_but_never_later_than_the_interval():
    r = reaper(FakeKeys([status()], []))
    assert r.plan(status(), None) == T0 + INTERVAL
    assert r.plan(status(upcoming=T0 + timedelta(hours=1)), None) == T0 + INTERVAL
    assert r.plan(status(upcoming=T0 + timedelta(seconds=9)), T0 + timedelta(seconds=4)) == T0 + timedelta(seconds=4)
    assert r.plan(status(upcoming=T0 + timedelta(seconds=3)), T0 + timedelta(seconds=4)) == T0 + timedelta(seconds=3)


def test_a_key_still_expired_after_a_pass_brings_the_next_one_soon_but_not_at_once():
    r = reaper(FakeKeys([status()], []))
    assert r.plan(status(oldest=T0 - timedelta(seconds=1)), None) == T0 + MIN_PAUSE


async def test_a_pass_with_nothing_expired_calls_no_reap_and_plans_for_the_next_expiry():
    keys = FakeKeys([status(upcoming=T0 + timedelta(seconds=5))], [])
    schedule = FakeSchedule(T0 + timedelta(seconds=2))
    wake = await reaper(keys, schedule).run_pass()
    assert keys.reap_calls == 0
    assert wake == T0 + timedelta(seconds=2)
    assert schedule.forgotten_until == [T0]


async def test_a_pass_reaps_until_a_batch_comes_back_short_then_tidies_the_schedule():
    after = status(upcoming=T0 + timedelta(seconds=30), now=T0 + timedelta(seconds=1))
    keys = FakeKeys([status(oldest=T0 - timedelta(seconds=1)), after], [3])
    schedule = FakeSchedule()
    wake = await reaper(keys, schedule).run_pass()
    assert keys.reap_calls == 1
    # Only what had expired when the pass began: the keys service deleted up to its own, later, clock.
    assert schedule.forgotten_until == [T0]
    assert wake == T0 + timedelta(seconds=30)


async def test_full_batches_are_drained_by_several_callers_at_once():
    keys = FakeKeys([status(oldest=T0), status()], [10] * 20 + [4], limit=10)
    deleted = await reaper(keys, concurrency=3).reap_all()
    assert deleted == 204
    assert keys.most_in_flight == 3
    # Each of the three callers stops at its first short (or empty) batch.
    assert keys.reap_calls == 23


async def test_a_paced_pass_calls_with_the_paced_batch_and_an_unpaced_one_with_the_full_batch():
    loop = asyncio.get_running_loop()
    paced = FakeKeys([status(oldest=T0), status()], [4] * 9 + [1], limit=4)
    # 400 keys a second in batches of 4: a batch every 10 ms.
    r = reaper(paced, batch_size=10, paced_batch_size=4, concurrency=2, max_rate=400, clock=loop.time)
    assert await r.reap_all() == 37
    assert paced.limits == {4}
    unpaced = FakeKeys([status(oldest=T0), status()], [10] * 3 + [2], limit=10)
    assert await reaper(unpaced, batch_size=10, paced_batch_size=4, concurrency=2).reap_all() == 32
    assert unpaced.limits == {10}


async def test_a_rate_limit_spaces_the_batches_of_all_callers():
    keys = FakeKeys([status(oldest=T0), status()], [10] * 9 + [4], limit=10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    # 100 keys per second in batches of 10: a batch every 0.1 s, whatever the number of callers.
    deleted = await reaper(keys, concurrency=3, max_rate=100, clock=loop.time).reap_all()
    elapsed = loop.time() - started
    assert deleted == 94
    assert 0.9 <= elapsed < 1.6, elapsed


SPREAD = timedelta(seconds=45)


def test_a_backlog_of_one_batch_or_less_goes_at_once():
    r = reaper(FakeKeys([status()], [], limit=1000), spread=SPREAD)
    assert r.pace(status(oldest=T0, expired=1000)) == 0
    assert r.pace(status(oldest=T0, expired=1001)) > 0


def test_a_mass_expiry_is_spread_to_be_gone_the_spread_after_its_oldest_key_expired():
    r = reaper(FakeKeys([status()], [], limit=1000), spread=SPREAD)
    # 100,000 keys, the oldest expired 5 s ago: 40 s left.
    assert r.pace(status(oldest=T0 - timedelta(seconds=5), expired=100_000)) == 2500
    # The next pass counts again: the pace follows the backlog and the time left.
    assert r.pace(status(oldest=T0 - timedelta(seconds=25), expired=20_000)) == 1000


def test_a_few_thousand_keys_go_no_slower_than_a_batch_a_second():
    r = reaper(FakeKeys([status()], [], limit=1000), spread=SPREAD)
    assert r.pace(status(oldest=T0, expired=5_000)) == 1000
    assert r.pace(status(oldest=T0, expired=45_000)) == 1000
    assert r.pace(status(oldest=T0, expired=90_000)) == 2000


def test_a_backlog_older_than_the_spread_goes_as_fast_as_it_can():
    r = reaper(FakeKeys([status()], [], limit=1000), spread=SPREAD)
    assert r.pace(status(oldest=T0 - timedelta(seconds=45), expired=100_000)) == 0
    assert r.pace(status(oldest=T0 - timedelta(hours=3), expired=5_000)) == 0


def test_the_rate_limit_caps_the_spread_and_paces_alone_without_one():
    capped = reaper(FakeKeys([status()], [], limit=1000), spread=SPREAD, max_rate=1500)
    assert capped.pace(status(oldest=T0 - timedelta(seconds=5), expired=100_000)) == 1500
    assert capped.pace(status(oldest=T0 - timedelta(seconds=5), expired=10_000)) == 1000
    assert capped.pace(status(oldest=T0, expired=10)) == 1500
    unspread = reaper(FakeKeys([status()], [], limit=1000), max_rate=1500)
    assert unspread.pace(status(oldest=T0 - timedelta(seconds=5), expired=100_000)) == 1500
    assert reaper(FakeKeys([status()], [], limit=1000)).pace(status(oldest=T0, expired=100_000)) == 0


async def test_a_paced_pass_starts_no_batch_after_its_time_so_the_next_pass_sets_the_pace(monkeypatch):
    monkeypatch.setattr(service, "REPLAN_SECONDS", 0.35)
    keys = FakeKeys([status(oldest=T0)], [10] * 50, limit=10)
    loop = asyncio.get_running_loop()
    r = reaper(keys, concurrency=2, clock=loop.time)
    # 100 keys a second in batches of 10: batches start at 0, 0.1, 0.2 and 0.3 s, then the pass is over.
    assert await r.reap_all(100) == 40
    assert keys.reap_calls == 4
    # The next pass, at 160 keys a second, spaces its batches 1/16 s apart, from the last one on: at 0.0625,
    # 0.125, ... 0.375 s from that one; the pass is over after the sixth.
    started = loop.time()
    assert await r.reap_all(160) == 60
    assert keys.reap_calls == 10
    assert loop.time() - started >= 0.3


async def test_a_small_backlog_is_one_call_and_the_next_pass_counts_what_expired_meanwhile():
    after = status(oldest=T0, expired=5_000, now=T0 + timedelta(milliseconds=20))
    # The first pass saw 5 expired keys, but more expired while it ran: its one batch came back full.
    keys = FakeKeys([status(oldest=T0, expired=5), after], [10] * 20, limit=10)
    wake = await reaper(keys, spread=SPREAD).run_pass()
    assert keys.reap_calls == 1
    assert wake == after.now + MIN_PAUSE
    # Without a spread, the pass drains whatever there is.
    keys = FakeKeys([status(oldest=T0, expired=5), after], [10] * 20 + [3], limit=10)
    await reaper(keys).run_pass()
    assert keys.reap_calls == 21 + 2


async def test_a_pass_right_after_one_that_left_a_backlog_starts_from_its_status_without_asking_again():
    clock = FakeClock()
    left = status(oldest=T0, expired=50_000, now=T0 + timedelta(seconds=2))
    keys = FakeKeys([status(oldest=T0, expired=100_000), left, status(oldest=T0, expired=45_000)], [], limit=10)
    schedule = FakeSchedule()
    r = reaper(keys, schedule, clock=clock)
    await r.run_pass()
    assert keys.status_calls == 2  # at its start and at its end
    clock.advance(MIN_PAUSE.total_seconds())
    await r.run_pass()
    assert keys.status_calls == 3, "the next pass starts from the last status"
    assert schedule.forgotten_until[-1] == left.now + MIN_PAUSE, "brought forward by the time since"
    # Later than STATUS_REUSE_SECONDS, or after a pass that left nothing expired, a pass asks.
    clock.advance(service.STATUS_REUSE_SECONDS + 0.01)
    await r.run_pass()
    assert keys.status_calls == 5
    keys = FakeKeys([status(upcoming=T0 + timedelta(seconds=1))], [], limit=10)
    r = reaper(keys, clock=clock)
    await r.run_pass()
    await r.run_pass()
    assert keys.status_calls == 2


async def test_without_a_rate_limit_batches_follow_each_other_at_once():
    keys = FakeKeys([status(oldest=T0), status()], [10] * 9 + [4], limit=10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await reaper(keys, concurrency=3).reap_all() == 94
    assert loop.time() - started < 0.5


async def test_a_single_short_batch_needs_no_second_caller():
    keys = FakeKeys([status(oldest=T0), status()], [7], limit=10)
    assert await reaper(keys, concurrency=4).reap_all() == 7
    assert keys.reap_calls == 1


async def test_a_failed_batch_fails_the_pass_and_leaves_the_schedule_alone():
    keys = FakeKeys([status(oldest=T0)], [10, -1], limit=10)
    schedule = FakeSchedule()
    with pytest.raises(ExceptionGroup):
        await reaper(keys, schedule).run_pass()
    assert schedule.forgotten_until == []


async def test_an_earlier_expiry_learnt_while_asleep_brings_the_wake_up_forward():
    now = datetime.now(UTC)
    r = reaper(FakeKeys([status(now=now)], []))
    await r.run_pass()
    sleeper = asyncio.create_task(r.sleep_until(now + timedelta(seconds=30)))
    await stays_true(lambda: not sleeper.done(), for_seconds=0.05)
    r.expiry_known(now + timedelta(days=365))  # later than planned: changes nothing
    await stays_true(lambda: not sleeper.done(), for_seconds=0.05)
    r.expiry_known(r.now() + timedelta(milliseconds=100))
    await asyncio.wait_for(sleeper, 2)


async def test_the_oldest_expired_age_keeps_growing_from_the_last_status_seen():
    clock = [100.0]
    keys = FakeKeys([status(oldest=T0 - timedelta(seconds=5))], [-1])
    r = reaper(keys, clock=lambda: clock[0])
    assert r.oldest_expired_age() == 0.0
    with pytest.raises(RuntimeError):
        await r.run_pass()
    assert r.oldest_expired_age() == pytest.approx(5.0)
    clock[0] += 20
    assert r.oldest_expired_age() == pytest.approx(25.0)


def test_a_key_due_since_the_last_status_counts_as_expired_in_the_age():
    clock = [0.0]
    r = reaper(FakeKeys([status()], []), clock=lambda: clock[0])
    r._observe(status(upcoming=T0 + timedelta(seconds=10)))
    assert r.oldest_expired_age() == 0.0
    clock[0] = 12.5
    assert r.oldest_expired_age() == pytest.approx(2.5)


async def test_an_expiry_the_last_pass_had_already_reached_wakes_nothing():
    now = datetime.now(UTC)
    r = reaper(FakeKeys([status(now=now)], []))
    await r.run_pass()
    sleeper = asyncio.create_task(r.sleep_until(now + timedelta(seconds=30)))
    await asyncio.sleep(0.02)
    r.expiry_known(now - timedelta(days=30))  # a created event replayed long after the key was reaped
    await stays_true(lambda: not sleeper.done(), for_seconds=0.05)
    sleeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sleeper
