"""The console's pages: sign-in redirects, escaping, the edit page, help and the security headers."""

import httpx

from tests.fixtures.directory import Tenant, create_admin
from tests.fixtures.errors import assert_error
from tests.fixtures.gateway import bearer
from tests.fixtures.keys import create_key


async def test_pages_send_a_browser_without_a_session_to_the_sign_in_page(gateway: httpx.AsyncClient):
    for path in ("/keys", "/keys/00000000-0000-0000-0000-000000000000"):
        response = await gateway.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/sign-in?next={path}"
    assert (await gateway.get("/")).headers["location"] == "/keys"


async def test_every_answer_carries_the_security_headers(gateway: httpx.AsyncClient):
    for path in ("/sign-in", "/api/v1/keys", "/static/console.css", "/help/api-keys"):
        headers = (await gateway.get(path)).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


async def test_the_list_page_has_the_seeds_controls_and_no_inline_script(signed_in, tenant: Tenant):
    async with signed_in(tenant.admins[0]) as browser:
        html = (await browser.client.get("/keys")).text
    for name in (
        "Delete",
        "New",
        "Download",
        "Support Center",
        "Search",
        "Select all",
        "Actions",
        "Edit API Key",
        "Copy Key to Clipboard",
    ):
        assert f'aria-label="{name}"' in html or f">{name}<" in html, name
    assert '<label for="organization">Organization</label>' in html
    assert tenant.name in html
    assert "<script>" not in html and " on" + "click=" not in html


async def test_what_an_administrator_typed_is_escaped_on_the_pages(
    gateway: httpx.AsyncClient, signed_in, tenant: Tenant
):
    evil = '<img src=x onerror="alert(1)">'
    created = await create_key(gateway, tenant.id, evil, headers=bearer(tenant.admins[0]))
    async with signed_in(tenant.admins[0]) as browser:
        page = await browser.client.get(f"/keys/{created['id']}")
    assert page.status_code == 200
    assert evil not in page.text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page.text


async def test_the_edit_page_shows_the_full_key_and_says_when_notices_are_unavailable(
    gateway: httpx.AsyncClient, signed_in, tenant: Tenant
):
    created = await create_key(gateway, tenant.orgs["org-1"], "Edit me", headers=bearer(tenant.admins[0]))
    async with signed_in(tenant.admins[0]) as browser:
        page = await browser.client.get(f"/keys/{created['id']}")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert created["key"] in page.text
    assert 'id="notices-unavailable"' in page.text


async def test_an_administrator_who_is_not_a_customer_administrator_sees_no_keys(gateway, signed_in, tenant, pool):
    async with pool.acquire() as conn:
        viewer = await create_admin(conn, tenant.id, role="administrator")
    await create_key(gateway, tenant.id, "Hidden from viewers", headers=bearer(tenant.admins[0]))
    async with signed_in(viewer) as browser:
        page = await browser.client.get("/keys")
    assert page.status_code == 403
    assert "Customer Administrators" in page.text
    assert "Hidden from viewers" not in page.text
    assert_error(await gateway.get("/api/v1/events", headers=bearer(viewer)), 403, "forbidden")


async def test_the_support_center_page_explains_the_api_key_page(gateway: httpx.AsyncClient):
    page = await gateway.get("/help/api-keys")
    assert page.status_code == 200
    for words in ("Support Center", "Download", "Select all", "30, 14, 7, 3 and 1 day", "Copy Key to Clipboard"):
        assert words in page.text, words
