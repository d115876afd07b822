"""Roll Key in the console (issue 21): from the Actions menu and the Edit page, the overlap to choose, the new
full key shown once; the expiry e-mail's link opens the roll for its key after sign-in."""

import re

import asyncpg
from playwright.async_api import BrowserContext, expect

from tests.fixtures.console import row, search, sign_in
from tests.fixtures.random_refs import unique
from tests.fixtures.stack import Stack


async def test_roll_key_from_the_actions_menu_shows_the_new_key_once_and_the_list_links_the_two(
    context: BrowserContext, stack: Stack
):
    key = await stack.create_key("acme-admin", "Radiology", unique("Roll desk"))
    page = await sign_in(context, "acme-admin")
    await search(page, key["name"])
    await row(page, key["name"]).get_by_role("button", name="Actions").click()
    await page.get_by_role("menuitem", name="Roll Key").click()
    dialog = page.get_by_role("dialog", name="Roll API Key")
    await expect(dialog.locator("#roll-name")).to_have_text(key["name"])
    await dialog.get_by_label("The old key keeps working for").select_option("1d")
    await dialog.get_by_role("button", name="Roll Key").click()

    await expect(dialog.get_by_role("heading", name="API key rolled")).to_be_visible()
    new_key = await dialog.locator("#rolled-key").text_content()
    assert new_key and re.fullmatch(r"kwk_\S+", new_key) and new_key != key["key"]
    new_id = (await dialog.get_by_role("link", name="Open the new key").get_attribute("href") or "").rsplit("/", 1)[-1]
    async with stack.api("acme-admin") as api:
        successor = (await api.get(f"/api/v1/keys/{new_id}")).json()
    assert (successor["key"], successor["replaces"], successor["name"]) == (new_key, key["id"], key["name"])

    await dialog.get_by_role("button", name="Done").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#rolled-key")).to_have_text("")  # shown once
    # Both keys listed under the one name, the rolled one linking to its successor.
    await expect(page.locator("#rows tr")).to_have_count(2)
    await expect(row(page, key["name"]).get_by_role("link", name="replaced")).to_have_attribute(
        "href", f"/keys/{new_id}"
    )
    assert page.errors == []  # type: ignore[attr-defined]


async def test_the_expiry_emails_link_opens_the_roll_for_its_key_after_sign_in(context: BrowserContext, stack: Stack):
    key = await stack.create_key("acme-admin", "Cardiology", unique("Emailed desk"))
    page = await context.new_page()
    await page.goto(f"/keys/{key['id']}?roll")  # the e-mail's link (services/notifier/rendering.py)
    await page.get_by_role("button", name="Sign in as acme-admin", exact=True).click()
    await page.wait_for_url(f"**/keys/{key['id']}?roll")
    dialog = page.get_by_role("dialog", name="Roll API Key")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#roll-name")).to_have_text(key["name"])
    await dialog.get_by_role("button", name="Roll Key").click()
    await expect(dialog.get_by_role("heading", name="API key rolled")).to_be_visible()
    new_id = (await dialog.get_by_role("link", name="Open the new key").get_attribute("href") or "").rsplit("/", 1)[-1]
    await dialog.get_by_role("button", name="Done").click()

    # The Edit page of the rolled key links its successor, not yet in use, and offers no second roll.
    await page.wait_for_url(f"**/keys/{key['id']}")
    replaced = page.locator("#replaced-by")
    await expect(replaced).to_contain_text("not in use yet")
    await expect(replaced.get_by_role("link")).to_have_attribute("href", f"/keys/{new_id}")
    await expect(page.get_by_role("button", name="Roll Key")).to_have_count(0)

    conn = await asyncpg.connect(stack.database_url)
    try:  # the successor's first verify, as the keys service records it
        await conn.execute("UPDATE keys.api_keys SET first_used_at = now() WHERE id = $1::uuid", new_id)
    finally:
        await conn.close()
    await page.reload()
    await expect(replaced).to_contain_text("in use since")
