"""Directory use cases: the organization tree and its administrators, as far as the actor reaches."""

from typing import Any
from uuid import UUID, uuid4

import asyncpg

from services.keys.auth import Actor
from services.keys.directory import repository
from services.keys.directory.schemas import Administrator, AdministratorCreate, Organization, OrganizationCreate
from shared.errors import ApiError, Conflict, NotFound


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
    return to_organization(row)


async def list_administrators(
    conn: asyncpg.Connection, actor: Actor, organization_id: UUID | None
) -> list[Administrator]:
    if organization_id is not None and await repository.organization(conn, organization_id, actor.reach) is None:
        raise NotFound("organization")
    rows = await repository.administrators(conn, actor.reach, organization_id)
    return [Administrator.model_validate(dict(r)) for r in rows]


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
    return Administrator.model_validate(dict(row))
