"""Directory use cases: the organization tree and its administrators, as far as the actor reaches."""

from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID, uuid4

import asyncpg

from services.keys.directory import repository
from services.keys.directory.schemas import Administrator, AdministratorCreate, Organization, OrganizationCreate
from shared.errors import ApiError, Conflict, NotFound


@dataclass(frozen=True, slots=True)
class Actor:
    """An administrator as the keys service sees them: who, and which part of the tree they reach."""

    username: str
    level: Literal["system", "tenant"]
    role: str
    organization_id: UUID
    tenant_id: UUID | None
    # The ltree path of the subtree they reach; None reaches everything (system level).
    reach: str | None

    @property
    def manages_keys(self) -> bool:
        return self.role == "customer_administrator"


class NoTenant(Exception):
    """A tenant-level administrator whose organization has no tenant: the directory is inconsistent."""


async def find_actor(conn: asyncpg.Connection, username: str) -> Actor | None:
    """The administrator `username` and their reach; None when the directory does not know them."""
    row = await repository.administrator_by_username(conn, username)
    if row is None:
        return None
    reach = None if row["level"] == "system" else row["tenant_path"]
    if row["level"] == "tenant" and reach is None:
        raise NoTenant(username)
    return Actor(
        username=row["username"],
        level=row["level"],
        role=row["role"],
        organization_id=row["organization_id"],
        tenant_id=row["tenant_id"],
        reach=reach,
    )


async def reachable_organization(conn: asyncpg.Connection, org_id: UUID, reach: str | None) -> asyncpg.Record | None:
    """The organization, if it lies within `reach` (None reaches everything)."""
    return await repository.organization(conn, org_id, reach)


def _administrator(row: asyncpg.Record) -> Administrator:
    return Administrator.model_validate({name: row[name] for name in Administrator.model_fields})


async def administrator(conn: asyncpg.Connection, actor: Actor) -> Administrator:
    """The acting administrator as the directory knows them now."""
    row = await repository.administrator_by_username(conn, actor.username)
    if row is None:
        raise NotFound("administrator")
    return _administrator(row)


async def all_administrators(conn: asyncpg.Connection) -> list[Administrator]:
    """Every administrator (for the development sign-in page)."""
    return [_administrator(r) for r in await repository.administrators(conn, None, None)]


async def organization_path(conn: asyncpg.Connection, organization_id: UUID) -> list[Organization]:
    """The organization and its ancestors, the system first."""
    rows = await repository.ancestors(conn, organization_id)
    if not rows:
        raise NotFound("organization")
    return [to_organization(r) for r in rows]


async def tenant_customer_administrators(conn: asyncpg.Connection, tenant_id: UUID) -> list[Administrator]:
    """The tenant-level customer administrators of a tenant, as the directory stands now."""
    return [_administrator(r) for r in await repository.tenant_customer_administrators(conn, tenant_id)]


def to_organization(row: asyncpg.Record) -> Organization:
    depth = row["depth"]
    return Organization(
        id=row["id"],
        name=row["name"],
        parent_id=row["parent_id"],
        tenant_id=row["tenant_id"],
        depth=depth,
        level="system" if depth == 0 else "tenant" if depth == 1 else "organization",
    )


def _require_manager(actor: Actor) -> None:
    if not actor.manages_keys:
        raise ApiError(403, "only customer administrators change the directory")


async def list_organizations(conn: asyncpg.Connection, actor: Actor) -> list[Organization]:
    return [to_organization(r) for r in await repository.organizations(conn, actor.reach)]


async def create_organization(conn: asyncpg.Connection, actor: Actor, data: OrganizationCreate) -> Organization:
    _require_manager(actor)
    async with conn.transaction():
        parent = await repository.organization(conn, data.parent_id, actor.reach)
        if parent is None:
            raise NotFound("parent organization")
        try:
            row = await repository.insert_organization(conn, uuid4(), data.name, parent)
        except asyncpg.UniqueViolationError:
            raise Conflict("an organization with this name already exists here", {"name": "already taken"}) from None
        details = {"name": row["name"], "parent_id": str(parent["id"])}
        await repository.audit(conn, actor.username, "create_organization", row["id"], details)
    return to_organization(row)


async def list_administrators(
    conn: asyncpg.Connection, actor: Actor, organization_id: UUID | None
) -> list[Administrator]:
    if organization_id is not None and await repository.organization(conn, organization_id, actor.reach) is None:
        raise NotFound("organization")
    return [_administrator(r) for r in await repository.administrators(conn, actor.reach, organization_id)]


def _placement_error(level: str, depth: int) -> str | None:
    if level == "system" and depth != 0:
        return "a system-level administrator belongs to the system organization"
    if level == "tenant" and depth == 0:
        return "a tenant-level administrator belongs to a tenant or an organization below one"
    return None


async def create_administrator(
    conn: asyncpg.Connection, actor: Actor, data: AdministratorCreate, *, replace: bool = False
) -> Administrator:
    if actor.level != "system" and data.level == "system":
        raise ApiError(403, "only system-level administrators create system-level administrators")
    _require_manager(actor)
    async with conn.transaction():
        org = await repository.organization(conn, data.organization_id, actor.reach)
        if org is None:
            raise NotFound("organization")
        problem = _placement_error(data.level, org["depth"])
        if problem:
            raise ApiError(422, problem, fields={"level": problem})
        fields: dict[str, Any] = data.model_dump()
        try:
            row = await repository.insert_administrator(conn, uuid4(), fields, org["tenant_id"], replace=replace)
        except asyncpg.UniqueViolationError:
            raise Conflict("this username is taken", {"username": "already taken"}) from None
        await repository.audit(conn, actor.username, "create_administrator", org["id"], administrator_details(row))
    return _administrator(row)


def administrator_details(row: asyncpg.Record) -> dict[str, Any]:
    """What an audit row says of an administrator it created."""
    return {name: str(row[name]) for name in ("username", "email", "level", "role", "id")}
