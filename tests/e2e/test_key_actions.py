"""Acting on keys: select and delete, download, copy to the clipboard, the Edit page, the keyboard."""

import csv
import io
import re

from playwright.async_api import BrowserContext, expect

from tests.fixtures.console import names, row, search, sign_in
from tests.fixtures.random_refs import unique
from tests.fixtures.stack import Stack


async def test_select_all_and_delete_removes_every_listed_key_after_confirming(context: BrowserContext, stack: Stack):
    tag = unique("gone").split()[1]
    for i in range(3):
        await stack.create_key("acme-admin", "Radiology", f"{tag} {i}")
    keeper = await stack.create_key("acme-admin", "Radiology", unique("keeper"))
    page = await sign_in(context, "acme-admin")
    await search(page, tag)
    await expect(page.locator("#rows tr")).to_have_count(3)
    await page.get_by_role("checkbox", name="Select all").check()
    await expect(page.locator("#rows tr.selected")).to_have_count(3)
    delete = page.get_by_role("button", name="Delete", exact=True)
    await expect(delete).to_be_visible()
    await delete.click()
    dialog = page.get_by_role("dialog", name="Delete 3 API keys")
    await expect(dialog.locator("#delete-names li")).to_have_text([f"{tag} 0", f"{tag} 1", f"{tag} 2"])
    await dialog.get_by_role("button", name="Delete").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#rows tr")).to_have_count(0)
    await expect(delete).to_be_hidden()
    await search(page, keeper["name"])
    assert await names(page) == [keeper["name"]]


async def test_one_key_is_deleted_from_its_actions_menu(context: BrowserContext, stack: Stack):
    key = await stack.create_key("acme-admin", "Radiology", unique("Menu delete"))
    page = await sign_in(context, "acme-admin")
    await search(page, key["name"])
    await row(page, key["name"]).get_by_role("button", name="Actions").click()
    await page.get_by_role("menuitem", name="Delete").click()
    dialog = page.get_by_role("dialog", name="Delete API key")
    await expect(dialog.locator("#delete-names li")).to_have_text([key["name"]])
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#rows tr")).to_have_count(1)
    await row(page, key["name"]).get_by_role("button", name="Actions").click()
    await page.get_by_role("menuitem", name="Delete").click()
    await dialog.get_by_role("button", name="Delete").click()
    await expect(page.locator("#rows tr")).to_have_count(0)


async def test_download_has_every_key_the_list_shows_with_the_entire_key(context: BrowserContext, stack: Stack):
    tag = unique("csv").split()[1]
    # More than one page of the list: the file has them all.
    keys = await stack.create_keys("globex-admin", "South Campus", [f"{tag} {i:02}" for i in range(60)])
    made = {k["name"]: k["key"] for k in keys}
    await stack.create_key("globex-admin", "North Campus", f"{tag} elsewhere")
    page = await sign_in(context, "globex-admin")
    await page.get_by_role("combobox", name="Organization", exact=True).select_option(
        value=stack.organizations["South Campus"]
    )
    await search(page, tag)
    await expect(page.locator("#list-status")).to_have_text("Showing 50 of 60 API keys")
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download").click()
    download = await info.value
    assert download.suggested_filename.endswith(".csv")
    text = (await download.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["name"]: r["key"] for r in rows} == made
    shown = await names(page)
    assert [r["name"] for r in rows][: len(shown)] == shown


async def test_copy_key_to_clipboard_copies_the_entire_key(new_context, stack: Stack):
    key = await stack.create_key("acme-admin", "Acme Health", unique("Clipboard"))
    context = await new_context(permissions=["clipboard-read", "clipboard-write"])
    page = await sign_in(context, "acme-admin")
    await search(page, key["name"])
    await row(page, key["name"]).get_by_role("button", name="Actions").click()
    await page.get_by_role("menuitem", name="Copy Key to Clipboard").click()
    await expect(page.locator("#toast")).to_contain_text("copied")
    assert await page.evaluate("navigator.clipboard.readText()") == key["key"]


async def test_the_edit_page_shows_the_entire_key_its_notices_and_renames(context: BrowserContext, stack: Stack):
    key = await stack.create_key("acme-admin", "Cardiology", unique("Edit desk"))
    page = await sign_in(context, "acme-admin")
    await search(page, key["name"])
    await row(page, key["name"]).locator(".col-org").dblclick()
    await page.wait_for_url(f"**/keys/{key['id']}")
    await expect(page.get_by_role("heading", name="Edit API Key")).to_be_visible()
    await expect(page.locator("#full-key")).to_have_text(key["key"])
    if stack.has_notifier:
        # The 400d threshold is crossed at creation: the notice reaches the tenant's customer administrators.
        for _ in range(60):
            if await page.locator("#notices tbody tr").count():
                break
            await page.wait_for_timeout(500)
            await page.reload()
        notices = page.locator("#notices tbody tr")
        await expect(notices.first).to_be_visible()
        text = " ".join(await notices.all_text_contents())
        assert "400 days before" in text and "acme-admin@acme.example.com" in text
    else:
        await expect(page.locator("#notices-unavailable")).to_be_visible()
    new_name = unique("Renamed desk")
    await page.get_by_label("Name").fill(new_name)
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#key-heading-name")).to_have_text(new_name)
    await page.get_by_role("button", name="Delete").click()
    await page.get_by_role("dialog", name="Delete API key").get_by_role("button", name="Delete").click()
    await page.wait_for_url("**/keys")
    await search(page, new_name)
    assert await names(page) == []


async def test_edit_api_key_from_the_actions_menu_opens_the_edit_page(context: BrowserContext, stack: Stack):
    key = await stack.create_key("acme-admin", "Cardiology", unique("Menu edit"))
    page = await sign_in(context, "acme-admin")
    await search(page, key["name"])
    await row(page, key["name"]).get_by_role("button", name="Actions").click()
    await page.get_by_role("menuitem", name="Edit API Key").click()
    await page.wait_for_url(re.compile(rf"/keys/{key['id']}$"))
    await expect(page.locator("#full-key")).to_have_text(key["key"])


async def test_the_keyboard_selects_a_row_with_space_and_works_the_actions_menu(context: BrowserContext, stack: Stack):
    key = await stack.create_key("acme-admin", "Radiology", unique("Keyboard"))
    page = await sign_in(context, "acme-admin")
    await search(page, key["name"])
    await page.get_by_role("checkbox", name="Select all").focus()
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.classList.contains('row-check')"):
            break
    checkbox = page.get_by_role("checkbox", name=f"Select {key['name']}")
    await expect(checkbox).to_be_focused()
    await expect(checkbox).to_have_css("opacity", "1")  # the person icon became a checkbox
    await page.keyboard.press("Space")
    await expect(checkbox).to_be_checked()
    await expect(row(page, key["name"])).to_have_class(re.compile("selected"))
    await expect(page.get_by_role("button", name="Delete", exact=True)).to_be_visible()
    await page.keyboard.press("Space")
    await expect(checkbox).not_to_be_checked()
    await page.keyboard.press("Tab")
    actions = row(page, key["name"]).get_by_role("button", name="Actions")
    await expect(actions).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("menuitem", name="Edit API Key")).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await expect(page.get_by_role("menuitem", name="Copy Key to Clipboard")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("menu")).to_be_hidden()
    await expect(actions).to_be_focused()
