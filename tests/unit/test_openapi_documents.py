"""The published API documents, read without running anything: the gateway publishes the rules the keys
service enforces (it passes its callers' requests on, and the keys service's 422s back), every error answer
has the error shape, and what shared/openapi.py says of names and usernames is what pydantic checks.
tests/integration/test_openapi_conformance.py holds the documents to the services' answers."""

import random
import re
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from services.gateway.app import create_app as gateway_app
from services.keys.app import create_app as keys_app
from services.keys.directory.schemas import Name, Username
from shared.openapi import name_schema, username_schema

# The gateway's calls and the keys service's calls they pass on.
SAME_REQUEST_BODY = [
    (("post", "/api/v1/keys"), ("post", "/v1/keys")),
    (("patch", "/api/v1/keys/{key_id}"), ("patch", "/v1/keys/{key_id}")),
    (("post", "/api/v1/keys/{key_id}/roll"), ("post", "/v1/keys/{key_id}/roll")),
    (("post", "/api/v1/keys/bulk-delete"), ("post", "/v1/keys/bulk-delete")),
    (("post", "/api/v1/organizations"), ("post", "/v1/organizations")),
    (("post", "/api/v1/administrators"), ("post", "/v1/administrators")),
]
SAME_PARAMETERS = [
    (("get", "/api/v1/keys"), ("get", "/v1/keys")),
    (("get", "/api/v1/keys/export.csv"), ("get", "/v1/keys/export.csv")),
    (("get", "/api/v1/keys/{key_id}"), ("get", "/v1/keys/{key_id}")),
    (("delete", "/api/v1/keys/{key_id}"), ("delete", "/v1/keys/{key_id}")),
]


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return keys_app().openapi()


@pytest.fixture(scope="module")
def gateway() -> dict[str, Any]:
    return gateway_app().openapi()


def resolved(document: dict[str, Any], schema: Any) -> Any:
    """`schema` with every `$ref` replaced by what it names in `document`."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return resolved(document, document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]])
        return {key: resolved(document, value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [resolved(document, item) for item in schema]
    return schema


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()]


@pytest.mark.parametrize(("at_gateway", "at_keys"), SAME_REQUEST_BODY)
def test_the_gateway_publishes_the_request_body_the_keys_service_enforces(keys, gateway, at_gateway, at_keys):
    def body(document: dict[str, Any], method: str, path: str) -> Any:
        return resolved(document, document["paths"][path][method]["requestBody"])

    assert body(gateway, *at_gateway) == body(keys, *at_keys)


@pytest.mark.parametrize(("at_gateway", "at_keys"), SAME_PARAMETERS)
def test_the_gateway_publishes_the_parameters_the_keys_service_enforces(keys, gateway, at_gateway, at_keys):
    published = {p["name"]: p for p in gateway["paths"][at_gateway[1]][at_gateway[0]]["parameters"]}
    enforced = {p["name"]: p for p in keys["paths"][at_keys[1]][at_keys[0]]["parameters"]}
    # The export passes on the list's filter and sort, not its paging.
    assert published == {name: enforced[name] for name in published}
    assert set(published) == set(enforced) - ({"limit", "cursor"} if at_gateway[1].endswith(".csv") else set())


@pytest.mark.parametrize("service", ["keys", "gateway"])
def test_every_error_answer_is_documented_with_the_error_shape(service, request):
    document = request.getfixturevalue(service)
    for method, path, operation in operations(document):
        errors = {status: answer for status, answer in operation["responses"].items() if int(status) >= 400}
        assert {"401", "500", "503"} <= set(errors), f"{method} {path}"
        for status, answer in errors.items():
            assert answer["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}, (
                f"{method} {path} {status}"
            )
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= set(errors), f"{method} {path}"
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_export_is_documented_as_csv(keys, gateway):
    for document, path in ((keys, "/v1/keys/export.csv"), (gateway, "/api/v1/keys/export.csv")):
        assert document["paths"][path]["get"]["responses"]["200"]["content"] == {
            "text/csv": {"schema": {"type": "string"}}
        }


# Characters on each side of every rule: whitespace that is trimmed (and a control, a separator among it),
# controls, format characters (bidi, zero-width, tags), private use, unassigned, combining marks, astral.
SAMPLES = [" ", "\t", "\n", "\x85", "\xa0", "\u2028", "\u3000", "\u1680", "a", "Z", "é", "0", ".", "@", "-", "_"]
SAMPLES += ["\u200b", "\u202e", "\xad", "\x00", "\x01", "\x7f", "\x9f", "\ue000", "\U000f0000", "\u0378", "\U00030000"]
SAMPLES += ["\u0301", "\U0001f600", "\U000e0001", "\U00020000", "\ufeff"]


def agrees(rule: Any, schema: dict[str, Any], value: str) -> bool:
    try:
        TypeAdapter(rule).validate_python(value)
        accepted = True
    except ValidationError:
        accepted = False
    published = re.search(schema["pattern"], value) is not None and len(value) >= schema.get("minLength", 0)
    return accepted == published


@pytest.mark.parametrize(("rule", "schema"), [(Name, name_schema()), (Username, username_schema())])
def test_the_published_pattern_accepts_exactly_what_the_field_accepts(rule, schema):
    rng = random.Random(8)
    lengths = [0, 1, 2, 3, 10, 63, 64, 65, 99, 100, 101, 102, 120]
    values = [sample * length for sample in SAMPLES for length in (1, 2, 100, 101)]
    for _ in range(5_000):
        alphabet = rng.choice([SAMPLES, [" ", "\t", "a"], [*SAMPLES, *[" "] * 20]])
        values.append("".join(rng.choice(alphabet) for _ in range(rng.choice(lengths))))
    assert [repr(v) for v in values if not agrees(rule, schema, v)] == []
