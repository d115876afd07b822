"""Names that people read: stored in NFC, and refused with a 422 naming the field when they carry a character
that changes how the text around it reads (bidi controls, zero-width and other format characters)."""

import asyncpg
import pytest

from tests.fixtures.directory import Tenant
from tests.fixtures.errors import assert_error
from tests.fixtures.keys import create_key
from tests.fixtures.random_refs import key_name, org_name

REFUSED = {
    "right-to-left override": "invoice\u202eexe.txt",
    "right-to-left isolate": "a\u2067b",
    "zero-width space": "front\u200bdesk",
    "zero-width joiner": "front\u200ddesk",
    "byte order mark": "\ufefffront desk",
    "soft hyphen": "front\u00addesk",
    "line separator": "front\u2028desk",
    "control character": "front\x1bdesk",
}


@pytest.mark.parametrize("character", sorted(REFUSED))
async def test_a_key_name_with_an_invisible_character_is_refused(as_admin, tenant: Tenant, character: str):
    api = as_admin(tenant.admins[0])
    answer = await api.post("/v1/keys", json={"name": REFUSED[character], "organization_id": str(tenant.id)})
    error = assert_error(answer, 422, "validation_failed")
    assert set(error["fields"]) == {"name"}


async def test_a_rename_and_an_organization_and_an_administrator_are_held_to_the_same_rule(
    as_admin, tenant: Tenant, pool: asyncpg.Pool
):
    api = as_admin(tenant.admins[0])
    key = await create_key(api, tenant.id)
    renamed = await api.patch(f"/v1/keys/{key['id']}", json={"name": "a\u202eb"})
    assert set(assert_error(renamed, 422, "validation_failed")["fields"]) == {"name"}
    assert await pool.fetchval("SELECT name FROM keys.api_keys WHERE id = $1", key["id"]) == key["name"]

    org = await api.post("/v1/organizations", json={"name": f"{org_name()}\u200b", "parent_id": str(tenant.id)})
    assert set(assert_error(org, 422, "validation_failed")["fields"]) == {"name"}

    admin = await api.post(
        "/v1/administrators",
        json={
            "username": f"u{key['id'][:8]}",
            "email": f"u{key['id'][:8]}@example.com",
            "display_name": "Eve\u202e",
            "level": "tenant",
            "organization_id": str(tenant.id),
        },
    )
    assert set(assert_error(admin, 422, "validation_failed")["fields"]) == {"display_name"}


async def test_a_name_is_stored_in_nfc(as_admin, tenant: Tenant, pool: asyncpg.Pool):
    decomposed = f"Caf\u0065\u0301 {key_name()}"
    key = await create_key(as_admin(tenant.admins[0]), tenant.id, decomposed)
    composed = decomposed.replace("e\u0301", "\u00e9")
    assert key["name"] == composed
    assert await pool.fetchval("SELECT name FROM keys.api_keys WHERE id = $1", key["id"]) == composed
