"""The console with AUTH_MODE=oidc, in Chromium, through the real provider's sign-in page (Keycloak, started by
deploy/local/keycloak.sh with the demo directory's administrators; every demo password is `keyward-demo`)."""

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.fixtures.console import names, search
from tests.fixtures.keycloak import OUTSIDER, PASSWORD
from tests.fixtures.random_refs import unique
from tests.fixtures.stack import Stack

COOKIE = "kw_session"


@pytest.fixture
async def at_console(browser: Browser, oidc_console: str) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(base_url=oidc_console, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    yield context
    await context.close()


async def provider_sign_in(page: Page, username: str) -> None:
    """Fills in the provider's own sign-in form."""
    await page.locator("#username").fill(username)
    await page.locator("#password").fill(PASSWORD)
    await page.locator("#kc-login").click()


async def sign_in(context: BrowserContext, username: str, path: str = "/keys") -> Page:
    page = await context.new_page()
    await page.goto(path)
    await expect(page.locator("#kc-form-login")).to_be_visible()
    await provider_sign_in(page, username)
    return page


async def session_cookie(context: BrowserContext) -> str | None:
    return next((c["value"] for c in await context.cookies() if c["name"] == COOKIE), None)


async def test_a_tenant_customer_administrator_sees_their_tenants_keys_and_the_system_administrator_all(
    browser: Browser, oidc_console: str, stack: Stack, at_console: BrowserContext
):
    tag = unique("sso").split()[1]
    await stack.create_key("acme-admin", "Cardiology", f"{tag} acme")
    await stack.create_key("globex-admin", "North Campus", f"{tag} globex")
    page = await sign_in(at_console, "acme-admin")
    await page.wait_for_url(f"{oidc_console}/keys")
    await expect(page.locator(".who-name")).to_have_text("Alex Acme")
    await search(page, tag)
    assert await names(page) == [f"{tag} acme"]
    system = await browser.new_context(base_url=oidc_console)
    try:
        page = await sign_in(system, "admin")
        await page.wait_for_url(f"{oidc_console}/keys")
        await search(page, tag)
        assert sorted(await names(page)) == [f"{tag} acme", f"{tag} globex"]
    finally:
        await system.close()


async def test_a_provider_user_the_directory_does_not_know_gets_a_clear_page_and_no_session(at_console):
    page = await sign_in(at_console, OUTSIDER)
    await expect(page.get_by_role("heading", name="Not an administrator of this console")).to_be_visible()
    await expect(page.locator("main")).to_contain_text(f"You signed in as {OUTSIDER}, who is not an administrator")
    assert await session_cookie(at_console) is None


async def test_sign_out_ends_the_session_for_a_copied_cookie_and_at_the_provider(oidc_console, at_console):
    page = await sign_in(at_console, "acme-admin")
    await page.wait_for_url(f"{oidc_console}/keys")
    copied = await session_cookie(at_console)
    assert copied
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(f"{oidc_console}/signed-out**")
    await expect(page.get_by_role("heading", name="You have signed out")).to_be_visible()
    async with httpx.AsyncClient(base_url=oidc_console, cookies={COOKIE: copied}) as outside:
        assert (await outside.get("/api/v1/me")).status_code == 401
        keys_page = await outside.get("/keys")
        assert keys_page.status_code == 303 and keys_page.headers["location"].startswith("/sign-in")
    # The provider's session ended too: signing in again asks for the password.
    await page.goto("/keys")
    await expect(page.locator("#kc-form-login")).to_be_visible()


async def test_a_session_id_set_before_sign_in_is_not_the_one_after_it(oidc_console, at_console):
    await at_console.add_cookies([{"name": COOKIE, "value": "planted-by-someone-else-00000000", "url": oidc_console}])
    page = await sign_in(at_console, "acme-ops")
    await page.wait_for_url(f"{oidc_console}/keys")
    after = await session_cookie(at_console)
    assert after and after != "planted-by-someone-else-00000000"


@pytest.mark.parametrize("asked", ["//evil.example", "https://evil.example", "/\\evil.example"])
async def test_after_sign_in_the_browser_stays_on_the_console(oidc_console, at_console, asked):
    page = await sign_in(at_console, "acme-admin", f"/sign-in?next={asked}")
    await page.wait_for_url(f"{oidc_console}/keys")
    assert page.url == f"{oidc_console}/keys"
