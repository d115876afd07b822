"""The list: subtree filter, partial search over visible columns, sort on any column, keyset pages."""

import pytest

from tests.fixtures.directory import Tenant
from tests.fixtures.errors import assert_error
from tests.fixtures.keys import create_key

SORTS = ["name", "organization", "expires_at", "created_by", "created_at", "key"]


@pytest.fixture
async def populated(as_admin, tenant: Tenant, pool):
    admin = as_admin(tenant.admins[0])
    keys = []
    for i, org in enumerate(["org-1", "org-2", "org-1", "org-2", "org-1"] * 5):
        keys.append(await create_key(admin, tenant.orgs[org], f"Key {i:02d} {'alpha' if i % 3 == 0 else 'beta'}"))
    keys.append(await create_key(admin, tenant.id, "At the tenant"))
    return keys


async def all_pages(caller, **params):
    seen, cursor, pages = [], None, 0
    while True:
        response = await caller.get("/v1/keys", params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, body["total"], pages


async def test_the_list_holds_the_keys_at_and_below_the_chosen_organization(as_admin, tenant: Tenant, populated):
    admin = as_admin(tenant.admins[0])
    below_org1, total, _ = await all_pages(admin, organization_id=str(tenant.orgs["org-1"]), limit=100)
    expected = {
        k["id"] for k in populated if k["organization_id"] in (str(tenant.orgs["org-1"]), str(tenant.orgs["org-2"]))
    }
    assert {k["id"] for k in below_org1} == expected and total == len(expected)
    only_org2, _, _ = await all_pages(admin, organization_id=str(tenant.orgs["org-2"]), limit=100)
    assert {k["organization_id"] for k in only_org2} == {str(tenant.orgs["org-2"])}


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_every_column_sorts_and_pages_without_gaps_or_repeats(as_admin, tenant: Tenant, populated, sort, order):
    admin = as_admin(tenant.admins[0])
    items, total, pages = await all_pages(admin, organization_id=str(tenant.id), sort=sort, order=order, limit=7)
    assert pages == 4 and total == len(populated) == len(items)
    assert len({k["id"] for k in items}) == len(items)
    field = {"organization": "organization_name", "key": "key_display"}.get(sort, sort)
    values = [
        (k[field].lower() if sort in ("name", "organization", "created_by") else k[field], k["id"]) for k in items
    ]
    assert values == sorted(values, reverse=order == "desc")


async def test_the_default_sort_is_by_name(as_admin, tenant: Tenant, populated):
    items = (await as_admin(tenant.admins[0]).get("/v1/keys", params={"limit": 100})).json()["items"]
    names = [k["name"].lower() for k in items]
    assert names == sorted(names)


@pytest.mark.parametrize(
    ("q", "expect"),
    [
        ("ALPH", lambda k: "alpha" in k["name"]),
        ("key 0", lambda k: k["name"].lower().startswith("key 0")),
        ("org2", lambda k: k["organization_name"].startswith("org2")),
        ("tenant", lambda k: True),
    ],
)
async def test_search_matches_part_of_any_visible_column_case_insensitively(
    as_admin, tenant: Tenant, populated, q, expect
):
    items, total, _ = await all_pages(as_admin(tenant.admins[0]), q=q, limit=100)
    assert {k["id"] for k in items} == {k["id"] for k in populated if expect(k)} and total == len(items)


async def test_search_finds_creators_key_fragments_and_expiry_dates(as_admin, tenant: Tenant, populated):
    admin = as_admin(tenant.admins[0])
    sample = populated[3]
    by_creator, _, _ = await all_pages(admin, q=tenant.admins[0][-6:], limit=100)
    assert len(by_creator) == len(populated)
    by_key, _, _ = await all_pages(admin, q=sample["key_display"][-4:], limit=100)
    assert sample["id"] in {k["id"] for k in by_key}
    by_date, _, _ = await all_pages(admin, q=sample["expires_at"][:10], limit=100)
    assert sample["id"] in {k["id"] for k in by_date}


async def test_search_treats_like_wildcards_literally(as_admin, tenant: Tenant, populated):
    admin = as_admin(tenant.admins[0])
    assert (await admin.get("/v1/keys", params={"q": "%"})).json()["total"] == 0
    assert (await admin.get("/v1/keys", params={"q": "ey_0"})).json()["total"] == 0  # "_" matches only itself


async def test_bad_list_parameters_get_clear_errors(as_admin, tenant: Tenant, populated):
    admin = as_admin(tenant.admins[0])
    for bad in ("sort", "digest"), ("order", "sideways"), ("limit", 0):
        error = assert_error(await admin.get("/v1/keys", params=dict([bad])), 422, "validation_failed")
        assert set(error["fields"]) == {bad[0]}, error
    garbage = assert_error(await admin.get("/v1/keys", params={"cursor": "garbage!"}), 400, "bad_request")
    assert "cursor" in garbage["message"]
    first = (await admin.get("/v1/keys", params={"limit": 2})).json()
    mismatch = await admin.get("/v1/keys", params={"limit": 2, "sort": "created_at", "cursor": first["next_cursor"]})
    assert "cursor" in assert_error(mismatch, 400, "bad_request")["message"]


async def test_the_total_stays_exact_through_creates_deletes_and_expiry(as_admin, tenant: Tenant, pool):
    admin = as_admin(tenant.admins[0])

    async def total(org):
        return (await admin.get("/v1/keys", params={"organization_id": str(org), "limit": 1})).json()["total"]

    keys = [await create_key(admin, tenant.orgs["org-2"]) for _ in range(5)] + [await create_key(admin, tenant.id)]
    assert (await total(tenant.id), await total(tenant.orgs["org-1"])) == (6, 5)
    await admin.delete(f"/v1/keys/{keys[0]['id']}")
    await admin.post("/v1/keys/bulk-delete", json={"ids": [keys[1]["id"], keys[5]["id"]]})
    assert (await total(tenant.id), await total(tenant.orgs["org-2"])) == (3, 3)
    # Expired but not reaped yet: gone from the list, and from the total.
    await pool.execute(
        "UPDATE keys.api_keys SET created_at = now() - interval '2 days', expires_at = now() - interval '1 second'"
        " WHERE id = $1",
        keys[2]["id"],
    )
    assert await total(tenant.id) == 2
    actual = await pool.fetchval(
        "SELECT count(*) FROM keys.api_keys WHERE organization_path <@ $1::ltree AND expires_at > now()", tenant.path
    )
    assert actual == 2


async def test_a_search_counts_its_matches_only_up_to_a_cap(as_admin, tenant: Tenant, populated, monkeypatch):
    from services.keys import service

    admin = as_admin(tenant.admins[0])
    monkeypatch.setattr(service, "SEARCH_COUNT_CAP", 4)
    many = (await admin.get("/v1/keys", params={"q": "beta", "limit": 2})).json()
    assert (many["total"], many["total_exact"]) == (4, False)
    few = (await admin.get("/v1/keys", params={"q": "at the tenant"})).json()
    assert (few["total"], few["total_exact"]) == (1, True)
