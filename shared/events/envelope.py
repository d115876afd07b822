"""CloudEvents 1.0 in Kafka's binary content mode: attributes as `ce_` headers, `data` as the JSON value."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

from shared.events.models import EVENT_TYPES, KeyEventData

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
SOURCE = "/keyward/keys"
DATASCHEMA_BASE = "https://keyward.io/schemas/events/"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class CloudEvent:
    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: KeyEventData
    partition_key: str

    @classmethod
    def of(cls, data: KeyEventData, *, event_id: UUID | None = None, time: datetime | None = None) -> "CloudEvent":
        return cls(
            id=str(event_id or uuid4()),
            type=data.type,
            source=SOURCE,
            subject=str(data.key_id),
            time=time or datetime.now(UTC),
            data=data,
            # Ordering per tenant; system-level keys share the organization's own id as their key.
            partition_key=str(data.tenant_id or data.organization_id),
        )


def fixed_attributes(event_type: str) -> list[tuple[str, str]]:
    """The header attributes every event of a type carries alike; with `ce_id`, `ce_subject` and `ce_time` they
    make the whole set (PostgreSQL adds those three itself when it writes a reap's events)."""
    return [
        ("ce_specversion", SPEC_VERSION),
        ("ce_type", event_type),
        ("ce_source", SOURCE),
        ("ce_dataschema", f"{DATASCHEMA_BASE}{event_type}.json"),
        ("content-type", CONTENT_TYPE),
    ]


def encode(event: CloudEvent) -> tuple[bytes, bytes, Headers]:
    """-> (message key, message value, headers) for a Kafka producer."""
    headers: Headers = [
        ("ce_id", event.id.encode()),
        ("ce_subject", event.subject.encode()),
        ("ce_time", event.time.astimezone(UTC).isoformat().replace("+00:00", "Z").encode()),
    ]
    headers += [(name, value.encode()) for name, value in fixed_attributes(event.type)]
    return event.partition_key.encode(), event.data.model_dump_json().encode(), headers


class InvalidEvent(ValueError):
    """A message that is not a lifecycle event this code understands."""


def decode(key: bytes | None, value: bytes | None, headers: Headers | tuple[tuple[str, bytes], ...]) -> CloudEvent:
    attrs = {name: raw.decode("utf-8", "replace") for name, raw in headers}
    if attrs.get("ce_specversion") != SPEC_VERSION:
        raise InvalidEvent(f"not a CloudEvents {SPEC_VERSION} message (ce_specversion={attrs.get('ce_specversion')!r})")
    event_type = attrs.get("ce_type", "")
    model = EVENT_TYPES.get(event_type)
    if model is None:
        raise InvalidEvent(f"unknown event type {event_type!r}")
    if value is None:
        raise InvalidEvent("the message has no data")
    try:
        data = model.model_validate_json(value)
        time = datetime.fromisoformat(attrs["ce_time"].replace("Z", "+00:00"))
        return CloudEvent(
            id=attrs["ce_id"],
            type=event_type,
            source=attrs["ce_source"],
            subject=attrs["ce_subject"],
            time=time,
            data=data,
            partition_key=(key or b"").decode(),
        )
    except (KeyError, ValueError) as exc:
        raise InvalidEvent(f"malformed {event_type} event: {exc}") from exc


def json_schema(model: type[KeyEventData]) -> dict[str, object]:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"{DATASCHEMA_BASE}{model.type}.json"
    schema["title"] = model.__name__
    return json.loads(json.dumps(schema))
