"""Request bodies and parameters of the gateway's API. The keys service checks the rules (lengths, characters,
uniqueness) and its 422s reach the caller unchanged, so the two can never disagree; these models check the
types only, and publish the keys service's rules in the gateway's document (`shared.openapi.Published`, and
the same enums and bounds: tests/unit/test_openapi_documents.py holds the two documents to each other)."""

from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.openapi import NAME, OVERLAP, OVERLAP_DESCRIPTION, USERNAME

LEVELS = ["system", "tenant"]
ROLES = ["customer_administrator", "administrator"]
# The keys service's `SORT_ALIASES`, in its order; `order` is asc or desc.
SORTS = [
    "name",
    "organization",
    "organization_name",
    "expires_at",
    "expiration",
    "expiration_date",
    "created_by",
    "created_at",
    "key",
    "key_display",
]

Name = Annotated[str, NAME]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def upstream(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class KeyCreate(Body):
    name: Name
    organization_id: UUID


class KeyUpdate(Body):
    name: Name


class KeyRoll(Body):
    overlap: Annotated[str, OVERLAP] | None = Field(None, description=OVERLAP_DESCRIPTION)


class BulkDelete(Body):
    ids: Annotated[list[UUID], Field(min_length=1, max_length=1000)]


class OrganizationCreate(Body):
    name: Name
    parent_id: UUID


class AdministratorCreate(Body):
    username: Annotated[str, USERNAME]
    email: Annotated[str, Field(json_schema_extra={"format": "email"})]
    display_name: Name
    level: Annotated[str, Field(json_schema_extra={"enum": LEVELS})]
    role: Annotated[str, Field(json_schema_extra={"enum": ROLES})] = "customer_administrator"
    organization_id: UUID


def _query(name: str, schema: dict[str, Any], title: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema | {"title": title}}


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


# The list's and the export's query parameters, passed on as they come (the keys service checks them).
EXPORT_PARAMETERS = [
    _query("organization_id", _optional({"type": "string", "format": "uuid"}), "Organization Id"),
    _query("q", _optional({"type": "string", "maxLength": 100, "pattern": "^[^\\x00]*$"}), "Q"),
    _query("sort", {"type": "string", "enum": SORTS, "default": "name"}, "Sort"),
    _query("order", {"type": "string", "enum": ["asc", "desc"], "default": "asc"}, "Order"),
]
LIST_PARAMETERS = [
    *EXPORT_PARAMETERS,
    _query("limit", {"type": "integer", "maximum": 500, "minimum": 1, "default": 50}, "Limit"),
    _query("cursor", _optional({"type": "string", "maxLength": 1000}), "Cursor"),
]


class Notice(BaseModel):
    threshold_seconds: int | None
    recipient: str | None
    status: str | None
    sent_at: str | None


def organization_tree(organizations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nests the keys service's flat list (parents first); the roots are the caller's topmost organizations."""
    nodes = {o["id"]: {**o, "children": []} for o in organizations}
    roots: list[dict[str, Any]] = []
    for node in nodes.values():
        parent = nodes.get(node["parent_id"])
        (parent["children"] if parent else roots).append(node)
    for node in nodes.values():
        node["children"].sort(key=lambda n: n["name"].lower())
    return roots


def flatten(tree: list[dict[str, Any]], depth: int = 0) -> list[tuple[int, dict[str, Any]]]:
    """(indent, organization) in menu order, for the organization menu."""
    out: list[tuple[int, dict[str, Any]]] = []
    for node in tree:
        out.append((depth, node))
        out.extend(flatten(node["children"], depth + 1))
    return out
