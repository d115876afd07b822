"""The API Key page: sign-in, the toolbar, search, the organization menu, sorting and paging."""

import re

from playwright.async_api import BrowserContext, expect

from tests.fixtures.console import names, search, settled, sign_in
from tests.fixtures.keys import create_key
from tests.fixtures.random_refs import unique
from tests.fixtures.stack import Stack


async def test_an_administrator_signs_in_and_sees_the_page_the_seed_describes(context: BrowserContext):
    page = await sign_in(context, "admin")
    for name in ("New", "Download", "Support Center"):
        await expect(
            page.get_by_role("toolbar")
            .get_by_role("button", name=name)
            .or_(page.get_by_role("toolbar").get_by_role("link", name=name))
        ).to_be_visible()
    await expect(page.get_by_role("button", name="Delete", exact=True)).to_be_hidden()
    await expect(page.get_by_role("searchbox", name="Search")).to_be_visible()
    await expect(page.get_by_role("combobox", name="Organization", exact=True)).to_be_visible()
    await expect(page.get_by_role("checkbox", name="Select all")).to_be_visible()
    headers = await page.locator("thead th").all_text_contents()
    assert [h.strip() for h in headers[1:6]] == ["Name", "Organization", "Expiration Date", "Created By", "Key"]
    await expect(page.locator("th[data-sort=name]")).to_have_attribute("aria-sort", "ascending")
    assert page.errors == []  # type: ignore[attr-defined]


async def test_creating_a_key_shows_it_once_with_a_copy_button_and_then_in_the_list(
    context: BrowserContext, stack: Stack
):
    page = await sign_in(context, "acme-admin")
    name = unique("Front desk")
    await page.get_by_role("button", name="New").click()
    dialog = page.get_by_role("dialog", name="Add API Key")
    await dialog.get_by_label("Name").fill(name)
    await dialog.get_by_label("Organization").select_option(value=stack.organizations["Cardiology"])
    await dialog.get_by_role("button", name="Add API Key").click()
    created = page.get_by_role("dialog", name="API key created")
    await expect(created.locator("#created-key")).to_have_text(re.compile(r"^kwk_[0-9A-Za-z]{42}$"))
    full = await created.locator("#created-key").text_content()
    await expect(created.get_by_role("button", name="Copy")).to_be_visible()
    await created.get_by_role("button", name="Done").click()
    await search(page, name)
    assert await names(page) == [name]
    key_cell = page.locator("#rows tr .col-key code")
    assert await key_cell.text_content() == f"{full[:8]}…{full[-4:]}"  # type: ignore[index]
    await expect(page.locator("#rows tr .col-org")).to_have_text("Cardiology")
    await expect(page.locator("#rows tr .col-creator")).to_have_text("acme-admin")


async def test_a_name_already_taken_is_explained_next_to_the_field(context: BrowserContext, stack: Stack):
    name = unique("Taken")
    await stack.create_key("acme-admin", "Acme Health", name)
    page = await sign_in(context, "acme-admin")
    await page.get_by_role("button", name="New").click()
    dialog = page.get_by_role("dialog", name="Add API Key")
    await dialog.get_by_label("Name").fill(name)
    await dialog.get_by_role("button", name="Add API Key").click()
    await expect(dialog.locator("#add-name-error")).to_have_text("Already taken")
    await expect(dialog.get_by_label("Name")).to_have_attribute("aria-invalid", "true")


async def test_search_finds_keys_by_part_of_a_name_an_organization_or_a_creator(context: BrowserContext, stack: Stack):
    tag = unique("zeb").split()[1]
    await stack.create_key("acme-ops", "Cardiology Night Shift", f"Nurse station {tag}")
    await stack.create_key("acme-admin", "Radiology", f"Scanner {tag}")
    page = await sign_in(context, "admin")
    await search(page, tag[2:7])
    assert sorted(await names(page)) == [f"Nurse station {tag}", f"Scanner {tag}"]
    await search(page, f"station {tag}"[:-2].upper())
    assert await names(page) == [f"Nurse station {tag}"]
    await search(page, "night shift")
    assert f"Nurse station {tag}" in await names(page)
    assert f"Scanner {tag}" not in await names(page)
    await search(page, "acme-op")
    listed = await page.locator("#rows .col-creator").all_text_contents()
    assert listed and set(listed) == {"acme-ops"}


async def test_choosing_an_organization_lists_exactly_the_keys_at_and_below_it(context: BrowserContext, stack: Stack):
    branch = unique("Branch")
    parent = await stack.create_org("acme-admin", stack.organizations["Acme Health"], branch)
    child = await stack.create_org("acme-admin", parent, unique("Ward"))
    sibling = await stack.create_org("acme-admin", stack.organizations["Acme Health"], unique("Sibling"))
    expected = set()
    async with stack.api("acme-admin") as api:
        for org_id in (parent, child, parent, sibling):
            name = unique("k")
            await create_key(api, org_id, name)
            if org_id != sibling:
                expected.add(name)
    page = await sign_in(context, "acme-admin")
    await page.get_by_role("combobox", name="Organization", exact=True).select_option(value=parent)
    await settled(page, "organization", parent)
    await expect(page.locator("#rows tr")).to_have_count(3)
    assert set(await names(page)) == expected
    await expect(page.locator("#list-status")).to_have_text("Showing 3 of 3 API keys")
    await page.get_by_role("combobox", name="Organization", exact=True).select_option(value=child)
    await expect(page.locator("#rows tr")).to_have_count(1)


async def test_sorting_by_a_column_header_and_back(context: BrowserContext, stack: Stack):
    tag = unique("sort").split()[1]
    for who, name in (("acme-ops", "b"), ("acme-admin", "c"), ("acme-ops", "a")):
        await stack.create_key(who, "Cardiology", f"{tag} {name}")
    page = await sign_in(context, "acme-admin")
    await search(page, tag)
    assert await names(page) == [f"{tag} a", f"{tag} b", f"{tag} c"]
    await page.get_by_role("button", name="Name").click()
    await expect(page.locator("th[data-sort=name]")).to_have_attribute("aria-sort", "descending")
    await settled(page, "sort", "name:desc")
    assert await names(page) == [f"{tag} c", f"{tag} b", f"{tag} a"]
    await page.get_by_role("button", name="Created By").click()
    await expect(page.locator("th[data-sort=created_by]")).to_have_attribute("aria-sort", "ascending")
    await expect(page.locator("th[data-sort=name]")).to_have_attribute("aria-sort", "none")
    await settled(page, "sort", "created_by:asc")
    assert await page.locator("#rows .col-creator").all_text_contents() == ["acme-admin", "acme-ops", "acme-ops"]


async def test_many_keys_page_in_by_cursor_as_the_list_scrolls(context: BrowserContext, stack: Stack):
    tag = unique("bulk").split()[1]
    await stack.create_keys("globex-admin", "North Campus", [f"{tag} {i:03}" for i in range(120)])
    page = await sign_in(context, "globex-admin")
    await search(page, tag)
    await expect(page.locator("#rows tr")).to_have_count(50)
    await expect(page.locator("#list-status")).to_have_text("Showing 50 of 120 API keys")
    await page.get_by_role("button", name="Load more").click()
    await expect(page.locator("#rows tr")).to_have_count(100)
    await page.locator("#sentinel").scroll_into_view_if_needed()
    await expect(page.locator("#rows tr")).to_have_count(120)
    await expect(page.get_by_role("button", name="Load more")).to_be_hidden()
    assert await names(page) == [f"{tag} {i:03}" for i in range(120)]
