"""Request bodies of the gateway's API. Types only: the keys service owns the rules (lengths, characters,
uniqueness) and its 422s reach the caller unchanged, so the two can never disagree."""

from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def upstream(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class KeyCreate(Body):
    name: str
    organization_id: UUID


class KeyUpdate(Body):
    name: str


class BulkDelete(Body):
    ids: Annotated[list[UUID], Field(min_length=1, max_length=1000)]


class OrganizationCreate(Body):
    name: str
    parent_id: UUID


class AdministratorCreate(Body):
    username: str
    email: str
    display_name: str
    level: str
    role: str = "customer_administrator"
    organization_id: UUID


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
