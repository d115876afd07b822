"""The gateway's roll (issue 21): passed to the keys service for the administrator, its answers back."""

import httpx

from tests.fixtures.directory import Tenant
from tests.fixtures.errors import assert_error
from tests.fixtures.gateway import bearer
from tests.fixtures.keys import create_key


async def test_rolling_a_key_answers_its_successor_with_the_full_key(gateway: httpx.AsyncClient, tenant: Tenant):
    headers = bearer(tenant.admins[0])
    old = await create_key(gateway, tenant.orgs["org-1"], "Front desk", headers=headers)
    response = await gateway.post(f"/api/v1/keys/{old['id']}/roll", json={"overlap": "12h"}, headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    new = response.json()
    assert (new["name"], new["replaces"]) == ("Front desk", old["id"])
    assert new["key"].startswith("kwk_") and new["key"] != old["key"]
    before = (await gateway.get(f"/api/v1/keys/{old['id']}", headers=headers)).json()
    assert before["replaced_by"] == new["id"]

    assert_error(await gateway.post(f"/api/v1/keys/{old['id']}/roll", headers=headers), 409, "conflict")
    bad = await gateway.post(f"/api/v1/keys/{new['id']}/roll", json={"overlap": "soon"}, headers=headers)
    assert_error(bad, 422, "validation_failed")
    assert_error(
        await gateway.post(f"/api/v1/keys/{new['id']}/roll", json={"other": 1}, headers=headers),
        422,
        "validation_failed",
    )


async def test_rolling_without_a_body_takes_the_default_overlap(gateway: httpx.AsyncClient, tenant: Tenant):
    headers = bearer(tenant.admins[0])
    old = await create_key(gateway, tenant.orgs["org-1"], headers=headers)
    response = await gateway.post(f"/api/v1/keys/{old['id']}/roll", headers=headers)
    assert response.status_code == 201, response.text
