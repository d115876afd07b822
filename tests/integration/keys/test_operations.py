"""Operator commands and surfaces: directory import, key rotation, metrics."""

import base64
import os
from pathlib import Path

import pytest

from services.keys import repository
from services.keys.crypto import KeyCipher, KeyDigester, Sealed, parse_ring
from services.keys.directory.importer import DirectoryImportError, import_directory, load
from services.keys.rotation import rotate
from tests.fixtures.directory import Tenant
from tests.fixtures.keys import create_key
from tests.fixtures.random_refs import suffix


async def test_the_yaml_import_builds_the_tree_and_is_safe_to_rerun(pool, tmp_path: Path):
    root, tenant_name = f"Root {suffix()}", f"Tenant {suffix()}"
    admin = f"imported-{suffix()}"
    path = tmp_path / "directory.yaml"
    path.write_text(
        f"""
organizations:
  - name: {root}
    children:
      - name: {tenant_name}
        children: [{{name: Sales, children: [{{name: EMEA}}]}}]
administrators:
  - {{username: {admin}, email: {admin}@example.com, display_name: Imported, level: tenant,
     organization: {root}/{tenant_name}/Sales}}
"""
    )
    async with pool.acquire() as conn:
        assert await import_directory(conn, load(path)) == {"organizations": 4, "administrators": 1}
        assert await import_directory(conn, load(path)) == {"organizations": 0, "administrators": 1}
        row = await conn.fetchrow(
            "SELECT a.level, o.name AS org, t.name AS tenant FROM keys.administrators a "
            "JOIN keys.organizations o ON o.id = a.organization_id JOIN keys.organizations t ON t.id = a.tenant_id "
            "WHERE a.username = $1",
            admin,
        )
    assert dict(row) == {"level": "tenant", "org": "Sales", "tenant": tenant_name}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("organizations: [{name: ''}]", "name"),
        ("administrators: [{username: x, email: bad, display_name: X, level: tenant, organization: A}]", "email"),
        ("organizations: [{name: A, colour: red}]", "colour"),
        ("{{{", "yaml|while parsing|expected"),
    ],
)
def test_a_bad_directory_file_is_refused_with_a_clear_message(tmp_path: Path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DirectoryImportError, match=message):
        load(path)


async def test_an_administrator_in_an_unknown_organization_is_refused_and_nothing_is_imported(pool, tmp_path: Path):
    root = f"Root {suffix()}"
    path = tmp_path / "d.yaml"
    path.write_text(
        f"organizations: [{{name: {root}}}]\n"
        "administrators: [{username: ghost, email: g@example.com, display_name: G, level: tenant, organization: Nowhere}]\n"
    )
    async with pool.acquire() as conn:
        with pytest.raises(DirectoryImportError, match="Nowhere"):
            await import_directory(conn, load(path))
        assert await conn.fetchval("SELECT count(*) FROM keys.organizations WHERE name = $1", root) == 0


async def test_rotation_moves_every_key_to_the_new_secrets_and_keys_still_verify(
    as_admin, tenant: Tenant, pool, settings, keys_app, http, voice_token
):
    keys = [await create_key(as_admin(tenant.admins[0]), tenant.id) for _ in range(3)]
    new_enc = f"rot-{suffix()}:{base64.b64encode(os.urandom(32)).decode()}"
    new_hmac = f"rot-{suffix()}:{base64.b64encode(os.urandom(32)).decode()}"
    cipher = KeyCipher(parse_ring(f"{new_enc},{settings.key_encryption_keys}", name="E", exact_bytes=32))
    digester = KeyDigester(parse_ring(f"{new_hmac},{settings.key_hmac_secrets}", name="H"))
    moved = await rotate(pool, cipher, digester)
    assert moved >= 3
    rows = await pool.fetch(
        "SELECT id, enc_key_id, digest_key_id, digest, ciphertext FROM keys.api_keys WHERE id = ANY($1::uuid[])",
        [k["id"] for k in keys],
    )
    by_id = {str(r["id"]): r for r in rows}
    for k in keys:
        row = by_id[k["id"]]
        assert (row["enc_key_id"], row["digest_key_id"]) == (cipher.active_id, digester.active_id)
        assert cipher.open(Sealed(row["enc_key_id"], row["ciphertext"]), row["id"]) == k["key"]
        assert row["digest"] == digester.digest(k["key"])
    assert await rotate(pool, cipher, digester) == 0
    # Rotate back, so the running app's own secrets are the active ones again for the tests after this.
    back = await rotate(
        pool,
        KeyCipher(parse_ring(f"{settings.key_encryption_keys},{new_enc}", name="E", exact_bytes=32)),
        KeyDigester(parse_ring(f"{settings.key_hmac_secrets},{new_hmac}", name="H")),
    )
    assert back == moved
    answer = await http.post(
        "/v1/keys/verify", json={"key": keys[0]["key"]}, headers={"Authorization": f"Bearer {voice_token}"}
    )
    assert answer.json()["valid"] is True


async def test_metrics_label_requests_by_route_template_not_raw_path(as_admin, tenant: Tenant, http):
    key = await create_key(as_admin(tenant.admins[0]), tenant.id)
    await as_admin(tenant.admins[0]).get(f"/v1/keys/{key['id']}")
    text = (await http.get("/metrics")).text
    assert 'route="/v1/keys/{key_id}"' in text
    assert key["id"] not in text
    assert "keyward_keys_created_total" in text and "keyward_verify_total" in text


async def test_the_stored_keys_gauge_counts_every_key_without_scanning_them(as_admin, tenant: Tenant, http, pool):
    admin = as_admin(tenant.admins[0])
    keys = [await create_key(admin, tenant.id) for _ in range(2)]
    await admin.delete(f"/v1/keys/{keys[0]['id']}")
    async with pool.acquire() as conn:
        stored = await repository.keys_stored(conn)
        assert stored == await conn.fetchval("SELECT count(*) FROM keys.api_keys")
    assert "keyward_keys_stored " in (await http.get("/metrics")).text
