"""The audit covers the directory: a new organization or administrator is written with the one who made it."""

from uuid import uuid4

import asyncpg

from tests.fixtures.directory import Tenant
from tests.fixtures.random_refs import org_name


async def test_creating_an_organization_is_audited_with_its_actor(as_admin, tenant: Tenant, pool: asyncpg.Pool):
    name = org_name()
    created = await as_admin(tenant.admins[0]).post(
        "/v1/organizations", json={"name": name, "parent_id": str(tenant.id)}
    )
    assert created.status_code == 201, created.text
    row = await pool.fetchrow(
        "SELECT actor, organization_id, details FROM keys.audit_log WHERE action = 'create_organization' "
        "AND organization_id = $1",
        created.json()["id"],
    )
    assert row is not None
    assert (row["actor"], row["details"]) == (tenant.admins[0], {"name": name, "parent_id": str(tenant.id)})


async def test_creating_an_administrator_is_audited_with_its_actor(as_admin, tenant: Tenant, pool: asyncpg.Pool):
    username = f"audited-{uuid4().hex[:12]}"
    body = {
        "username": username,
        "email": f"{username}@example.com",
        "display_name": "Audited Person",
        "level": "tenant",
        "organization_id": str(tenant.id),
    }
    created = await as_admin(tenant.admins[0]).post("/v1/administrators", json=body)
    assert created.status_code == 201, created.text
    rows = await pool.fetch(
        "SELECT actor, organization_id, details FROM keys.audit_log WHERE action = 'create_administrator' "
        "AND details->>'username' = $1",
        username,
    )
    assert [(r["actor"], r["organization_id"]) for r in rows] == [(tenant.admins[0], tenant.id)]
    assert rows[0]["details"] | {"id": None} == {
        "username": username,
        "email": f"{username}@example.com",
        "level": "tenant",
        "role": "customer_administrator",
        "id": None,
    }


async def test_a_refused_creation_leaves_no_audit_row(as_admin, tenant: Tenant, pool: asyncpg.Pool):
    name = org_name()
    refused = await as_admin(tenant.admins[0]).post(
        "/v1/organizations", json={"name": name, "parent_id": "00000000-0000-0000-0000-000000000000"}
    )
    assert refused.status_code == 404
    assert await pool.fetchval("SELECT count(*) FROM keys.audit_log WHERE details->>'name' = $1", name) == 0
