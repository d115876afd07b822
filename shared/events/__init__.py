"""The lifecycle events every service speaks: their data models and the CloudEvents envelope."""

from shared.events.envelope import CloudEvent, decode, encode, fixed_attributes
from shared.events.models import (
    EVENT_TYPES,
    DeleteReason,
    KeyCreated,
    KeyDeleted,
    KeyEventData,
    KeyExpiring,
    KeyRotated,
    KeyUpdated,
)

__all__ = [
    "EVENT_TYPES",
    "CloudEvent",
    "DeleteReason",
    "KeyCreated",
    "KeyDeleted",
    "KeyEventData",
    "KeyExpiring",
    "KeyRotated",
    "KeyUpdated",
    "decode",
    "encode",
    "fixed_attributes",
]
