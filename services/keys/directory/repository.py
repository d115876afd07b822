"""Every SQL statement of the organization directory."""

from typing import Any
from uuid import UUID

import asyncpg
import orjson

ORG_COLUMNS = "id, name, parent_id, tenant_id, path::text AS path, nlevel(path) - 1 AS depth"
ADMIN_COLUMNS = (
    "a.id, a.username, a.email, a.display_name, a.level, a.role, a.organization_id, a.tenant_id, a.created_at"
)


def label(org_id: UUID) -> str:
    return org_id.hex


async def organization(conn: asyncpg.Connection, org_id: UUID, reach: str | None) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ORG_COLUMNS} FROM keys.organizations WHERE id = $1 AND ($2::ltree IS NULL OR path <@ $2::ltree)",
        org_id,
        reach,
    )


async def child_by_name(conn: asyncpg.Connection, parent_id: UUID | None, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        SELECT {ORG_COLUMNS} FROM keys.organizations
        WHERE parent_id IS NOT DISTINCT FROM $1 AND lower(name) = lower($2)
        """,
        parent_id,
        name,
    )


async def organization_by_path_names(conn: asyncpg.Connection, names: list[str]) -> asyncpg.Record | None:
    """Finds `System/Acme/Sales` by the names along the way (for the YAML import)."""
    row = None
    for name in names:
        row = await child_by_name(conn, row["id"] if row else None, name)
        if row is None:
            return None
    return row


async def ancestors(conn: asyncpg.Connection, org_id: UUID) -> list[asyncpg.Record]:
    """The organization and everything above it, the system root first; empty when unknown."""
    return await conn.fetch(
        f"""
        SELECT {ORG_COLUMNS} FROM keys.organizations
        WHERE path @> (SELECT path FROM keys.organizations WHERE id = $1)
        ORDER BY nlevel(path)
        """,
        org_id,
    )


async def organizations(conn: asyncpg.Connection, reach: str | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {ORG_COLUMNS} FROM keys.organizations WHERE $1::ltree IS NULL OR path <@ $1::ltree ORDER BY path",
        reach,
    )


async def insert_organization(
    conn: asyncpg.Connection, org_id: UUID, name: str, parent: asyncpg.Record | None
) -> asyncpg.Record:
    if parent is None:
        path, tenant_id = label(org_id), None
    else:
        path = f"{parent['path']}.{label(org_id)}"
        # A child of the system root is a tenant; deeper nodes belong to their ancestor tenant.
        tenant_id = org_id if parent["depth"] == 0 else parent["tenant_id"]
    return await conn.fetchrow(
        f"""
        INSERT INTO keys.organizations (id, name, parent_id, path, tenant_id)
        VALUES ($1, $2, $3, $4::ltree, $5)
        RETURNING {ORG_COLUMNS}
        """,
        org_id,
        name,
        parent["id"] if parent else None,
        path,
        tenant_id,
    )


async def administrator_by_username(conn: asyncpg.Connection | asyncpg.Pool, username: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        SELECT {ADMIN_COLUMNS}, o.path::text AS organization_path, t.path::text AS tenant_path
        FROM keys.administrators a
        JOIN keys.organizations o ON o.id = a.organization_id
        LEFT JOIN keys.organizations t ON t.id = a.tenant_id
        WHERE a.username = $1
        """,
        username,
    )


async def administrators(
    conn: asyncpg.Connection, reach: str | None, organization_id: UUID | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""
        SELECT {ADMIN_COLUMNS} FROM keys.administrators a JOIN keys.organizations o ON o.id = a.organization_id
        WHERE ($1::ltree IS NULL OR o.path <@ $1::ltree) AND ($2::uuid IS NULL OR a.organization_id = $2)
        ORDER BY a.username
        """,
        reach,
        organization_id,
    )


async def tenant_customer_administrators(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: UUID
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""
        SELECT {ADMIN_COLUMNS} FROM keys.administrators a
        WHERE a.tenant_id = $1 AND a.level = 'tenant' AND a.role = 'customer_administrator'
        ORDER BY a.username
        """,
        tenant_id,
    )


async def insert_administrator(
    conn: asyncpg.Connection, admin_id: UUID, fields: dict[str, Any], tenant_id: UUID | None, *, replace: bool = False
) -> asyncpg.Record:
    """Inserts; with `replace`, an existing username is updated in place (the YAML import is re-runnable)."""
    on_conflict = (
        """ON CONFLICT (username) DO UPDATE SET email = EXCLUDED.email, display_name = EXCLUDED.display_name,
            level = EXCLUDED.level, role = EXCLUDED.role, organization_id = EXCLUDED.organization_id,
            tenant_id = EXCLUDED.tenant_id"""
        if replace
        else ""
    )
    return await conn.fetchrow(
        f"""
        INSERT INTO keys.administrators AS a
            (id, username, email, display_name, level, role, organization_id, tenant_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        {on_conflict}
        RETURNING {ADMIN_COLUMNS}
        """,
        admin_id,
        fields["username"],
        fields["email"],
        fields["display_name"],
        fields["level"],
        fields["role"],
        fields["organization_id"],
        tenant_id,
    )


async def audit(
    conn: asyncpg.Connection, actor: str, action: str, organization_id: UUID, details: dict[str, Any]
) -> None:
    """A change of the directory in the keys' audit log (one log: who did what, keys and directory alike)."""
    await conn.execute(
        "INSERT INTO keys.audit_log (actor, action, organization_id, details) VALUES ($1, $2, $3, $4::text::jsonb)",
        actor,
        action,
        organization_id,
        orjson.dumps(details).decode(),  # as text: the directory import runs on a connection without codecs
    )
