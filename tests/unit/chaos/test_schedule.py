"""The chaos run's fault schedule (chaos/faults.py): repeatable from its seed, and overlapping faults only where the
two can be in progress together without making a guarantee impossible by design (issue 20)."""

import random

import pytest

from chaos.faults import KINDS, Fault, compatible, outage, schedule
from chaos.stack import REPLICAS


def drawn(seed: int, *, overlap: float, every: float | None = 20.0) -> list[Fault]:
    return schedule(
        random.Random(seed), list(KINDS), start=35, end=1920, every=every, replicas=list(REPLICAS), overlap=overlap
    )


def test_the_same_seed_draws_the_same_schedule() -> None:
    first, again = drawn(7, overlap=0.3), drawn(7, overlap=0.3)
    assert [f.describe() for f in first] == [f.describe() for f in again]
    assert [f.describe() for f in first] != [f.describe() for f in drawn(8, overlap=0.3)]


@pytest.mark.parametrize("seed", range(40))
def test_overlapping_faults_are_compatible_and_never_more_than_two(seed: int) -> None:
    faults = drawn(seed, overlap=1.0)
    overlapping = [i for i, f in enumerate(faults) if f.overlaps is not None]
    assert overlapping, "with overlap=1.0 some faults overlap"
    for i in overlapping:
        fault, before = faults[i], faults[i - 1]
        assert fault.overlaps == i - 1
        assert before.overlaps is None  # at most two faults in progress at once
        assert compatible(before, fault), (before.describe(), fault.describe())
        assert not (fault.kind == before.kind == "kill-leader")  # two brokers of three down: nothing commits
        assert 0.2 * before.pause - 0.05 <= fault.offset <= 0.8 * before.pause + 0.05  # rounded to 0.1 s
        assert outage(faults, i - 1) >= before.pause


def test_no_overlap_without_the_chance() -> None:
    assert all(f.overlaps is None for seed in range(20) for f in drawn(seed, overlap=0.0))


def test_one_fault_of_each_kind_without_every() -> None:
    assert sorted(f.kind for f in drawn(26, overlap=0.3, every=None)) == sorted(KINDS)


def test_compatible_refuses_what_cannot_be_in_progress_together() -> None:
    assert not compatible(Fault(0, "kill-leader"), Fault(1, "kill-leader"))
    assert not compatible(Fault(0, "smtp-4xx"), Fault(1, "smtp-4xx"))
    assert not compatible(Fault(0, "kill-replica", "keys-1"), Fault(1, "kill-replica", "keys-2"))
    assert not compatible(Fault(0, "kill-replica", "keys-1"), Fault(1, "proxy-cut", "keys-1", path="kafka"))
    # every replica's path to broker 2 includes keys-1's
    assert not compatible(
        Fault(0, "proxy-cut", "broker-2", path="kafka"), Fault(1, "proxy-latency", "keys-1", path="kafka")
    )
    assert compatible(Fault(0, "kill-leader"), Fault(1, "proxy-cut", "broker-3", path="kafka"))
    assert compatible(Fault(0, "kill-replica", "keys-1"), Fault(1, "kill-replica", "notifier-1"))
    assert (
        compatible(
            Fault(0, "proxy-cut", "keys-1", path="postgresql"), Fault(1, "proxy-latency", "keys-1", path="kafka")
        )
        is False
    )  # one target twice
    assert compatible(Fault(0, "proxy-cut", "keys-1", path="postgresql"), Fault(1, "postgres-restart"))


def test_a_proxy_fault_names_its_proxies() -> None:
    assert Fault(0, "proxy-cut", "keys-2", path="postgresql").proxies() == ["pg-keys-2"]
    assert Fault(0, "proxy-cut", "keys-2", path="kafka").proxies() == [f"kafka-keys-2-{n}" for n in (1, 2, 3)]
    assert Fault(0, "proxy-cut", "broker-3", path="kafka").proxies() == [f"kafka-{r}-3" for r in REPLICAS]
