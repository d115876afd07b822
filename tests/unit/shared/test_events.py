from pathlib import Path

import pytest
import yaml

from shared.events import CloudEvent, KeyDeleted, decode, encode
from shared.events.envelope import InvalidEvent
from shared.events.models import EVENT_TYPES
from shared.events.schemagen import rendered
from tests.fixtures.events import detached_key_fields

ROOT = Path(__file__).resolve().parents[3]


def deleted() -> KeyDeleted:
    return KeyDeleted(**detached_key_fields(), reason="bulk", deleted_by="ada")


def test_the_committed_schemas_match_the_models():
    for path, text in rendered().items():
        assert path.exists(), f"{path.name} is missing: run python -m shared.events.schemagen"
        assert path.read_text() == text, f"{path.name} is stale: run python -m shared.events.schemagen"


def test_the_asyncapi_document_names_every_event_type_and_its_schema():
    doc = yaml.safe_load((ROOT / "docs/asyncapi.yaml").read_text())
    messages = doc["components"]["messages"].values()
    assert {m["name"] for m in messages} == set(EVENT_TYPES)
    for m in messages:
        assert (ROOT / "docs" / m["payload"]["$ref"]).resolve().exists()


def test_an_event_round_trips_through_binary_mode_headers():
    data = deleted()
    event = CloudEvent.of(data)
    key, value, headers = encode(event)
    names = dict(headers)
    assert names["ce_specversion"] == b"1.0" and names["ce_type"] == b"io.keyward.apikey.deleted.v1"
    assert names["ce_subject"] == str(data.key_id).encode() and key == str(data.tenant_id).encode()
    back = decode(key, value, headers)
    assert back.data == data and back.id == event.id


def test_a_message_that_is_not_a_known_cloudevent_is_refused():
    _, value, headers = encode(CloudEvent.of(deleted()))
    with pytest.raises(InvalidEvent):
        decode(None, value, [(n, b"io.other.v1" if n == "ce_type" else v) for n, v in headers])
    with pytest.raises(InvalidEvent):
        decode(None, b"{not json", headers)
    with pytest.raises(InvalidEvent):
        decode(None, value, [])
