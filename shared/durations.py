"""Durations as the contract writes them: an integer with an s, m, h or d suffix."""

import functools
import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer
from pydantic_settings import NoDecode

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_duration(value: object, *, zero: bool = False) -> timedelta:
    """'365d' -> timedelta(days=365). A timedelta or a number of seconds passes through. Zero only if `zero`."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 60s, 15m, 12h or 365d, got {type(value).__name__}")
    match = _PATTERN.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration: use a whole number with s, m, h or d, e.g. 30d")
    amount, unit = match.groups()
    seconds = int(amount) * _UNITS[unit]
    if seconds < 0 or (seconds == 0 and not zero):
        raise ValueError(f"{value!r} must be longer than zero")
    return timedelta(seconds=seconds)


def parse_thresholds(value: object) -> tuple[timedelta, ...]:
    """'30d,14d,7d' -> the distinct thresholds, longest first."""
    if isinstance(value, str):
        items: list[object] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError("expected a comma-separated list of durations such as 30d,14d,7d,3d,1d")
    if not items:
        raise ValueError("at least one threshold is required")
    return tuple(sorted({parse_duration(item) for item in items}, reverse=True))


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
# A duration where 0s means "none" (a feature turned off).
DurationOrZero = Annotated[
    timedelta, BeforeValidator(functools.partial(parse_duration, zero=True)), PlainSerializer(format_duration)
]
# NoDecode: settings read "30d,14d" as written, not as JSON.
Thresholds = Annotated[tuple[timedelta, ...], NoDecode, BeforeValidator(parse_thresholds)]
