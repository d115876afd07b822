"""The key lifecycle events, built from a key's row: the one place that says what each event carries.

Rows are those of `repository` (`KEY_COLUMNS`, or the columns a statement returns): `id` becomes `key_id`,
every other field of `KeyEventData` is the column of its own name. The reap statement writes its `deleted`
events in SQL from the same field list (`repository.reap_expired`).
"""

import math
from typing import Any

import asyncpg

from shared.events import (
    CloudEvent,
    DeleteReason,
    KeyCreated,
    KeyDeleted,
    KeyEventData,
    KeyExpiring,
    KeyRotated,
    KeyUpdated,
)

# The event field -> the key row's column, where the two names differ.
COLUMN_OF = {"key_id": "id"}
KEY_FIELDS = tuple(KeyEventData.model_fields)


def key_fields(row: asyncpg.Record) -> dict[str, Any]:
    """The fields every lifecycle event carries about its key."""
    return {name: row[COLUMN_OF.get(name, name)] for name in KEY_FIELDS}


def created(row: asyncpg.Record) -> CloudEvent:
    return CloudEvent.of(KeyCreated(**key_fields(row)))


def updated(row: asyncpg.Record, previous_name: str) -> CloudEvent:
    return CloudEvent.of(KeyUpdated(**key_fields(row), previous_name=previous_name))


def deleted(row: asyncpg.Record, reason: DeleteReason, deleted_by: str) -> CloudEvent:
    return CloudEvent.of(KeyDeleted(**key_fields(row), reason=reason, deleted_by=deleted_by))


def days_left(seconds_left: float) -> int:
    return max(0, math.ceil(seconds_left / 86400))


def expiring(row: asyncpg.Record) -> CloudEvent:
    """From a row of `repository.announce_expiring` (key columns, threshold, seconds_left, organization_names)."""
    return CloudEvent.of(
        KeyExpiring(
            **key_fields(row),
            threshold_seconds=row["threshold"],
            days_left=days_left(float(row["seconds_left"])),
            organization_names=row["organization_names"],
        )
    )


def rotated(predecessor: asyncpg.Record, successor: asyncpg.Record, rotated_by: str) -> CloudEvent:
    """A roll: the predecessor's row as it stands after it (its expiry the end of the overlap), the successor's."""
    return CloudEvent.of(
        KeyRotated(
            **key_fields(predecessor),
            successor_id=successor["id"],
            successor_key_display=successor["key_display"],
            successor_expires_at=successor["expires_at"],
            overlap_ends_at=predecessor["expires_at"],
            rotated_by=rotated_by,
        )
    )
