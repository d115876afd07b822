from datetime import timedelta

import pytest

from shared.durations import format_duration, parse_duration, parse_thresholds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60s", timedelta(seconds=60)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("365d", timedelta(days=365)),
        (" 7d ", timedelta(days=7)),
    ],
)
def test_durations_take_s_m_h_and_d_suffixes(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "1w", "-5s", "0s", "1.5d", "d", "5 days"])
def test_bad_durations_are_refused_with_a_clear_message(text):
    with pytest.raises(ValueError, match=r"duration|longer than zero"):
        parse_duration(text)


def test_thresholds_are_distinct_and_longest_first():
    assert parse_thresholds("1d,30d,7d,14d,3d,7d") == tuple(timedelta(days=d) for d in (30, 14, 7, 3, 1))


def test_an_empty_threshold_list_is_refused():
    with pytest.raises(ValueError):
        parse_thresholds(" , ")


@pytest.mark.parametrize(
    "value", [timedelta(days=365), timedelta(hours=2), timedelta(minutes=3), timedelta(seconds=61)]
)
def test_formatting_round_trips(value):
    assert parse_duration(format_duration(value)) == value
