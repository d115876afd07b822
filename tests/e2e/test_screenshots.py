"""The pages as the README shows them, at desktop and phone widths; a narrow window never scrolls sideways.

Set KEYWARD_SCREENSHOTS=1 to write the PNGs into docs/screenshots/ (otherwise into a temporary folder).
"""

import os
from pathlib import Path

import asyncpg
from playwright.async_api import Page, expect

from tests.fixtures.console import sign_in
from tests.fixtures.keys import create_key
from tests.fixtures.processes import ROOT
from tests.fixtures.stack import Stack

DEMO_KEYS = [
    ("Front desk kiosk", "Contoso Health"),
    ("Emergency triage", "Emergency"),
    ("Night shift nurses", "Emergency"),
    ("Pediatrics ward 3", "Pediatrics"),
    ("Pediatrics reception", "Pediatrics"),
    ("Billing terminal", "Contoso Health"),
    ("Dictation pool A", "Radiology Reading"),
    ("Dictation pool B", "Radiology Reading"),
]


async def _contoso(stack: Stack) -> dict[str, str]:
    """A tenant of its own, so the pictures show only their keys."""
    orgs = {"Contoso Health": await stack.create_org("admin", stack.organizations["Keyward"], "Contoso Health")}
    for name in ("Emergency", "Pediatrics", "Radiology Reading"):
        orgs[name] = await stack.create_org("admin", orgs["Contoso Health"], name)
    async with stack.api("admin") as api:
        admin = {
            "username": "contoso-admin",
            "email": "it@contoso.example.com",
            "display_name": "Casey Contoso",
            "level": "tenant",
            "organization_id": orgs["Contoso Health"],
        }
        created = await api.post("/api/v1/administrators", json=admin)
        assert created.status_code == 201, created.text
    async with stack.api("contoso-admin") as api:
        for name, org in DEMO_KEYS:
            await create_key(api, orgs[org], name)
    # One key close to its end, to show the days left (the API cannot make one: a key lives a year).
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(
            "UPDATE keys.api_keys SET expires_at = now() + interval '12 days 3 hours' WHERE name = 'Night shift nurses'"
        )
    finally:
        await conn.close()
    return orgs


async def _no_sideways_scroll(page: Page) -> None:
    overflow = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the window"


async def test_the_pages_look_right_on_a_desktop_and_in_a_narrow_window(new_context, stack: Stack, tmp_path: Path):
    out = ROOT / "docs/screenshots" if os.environ.get("KEYWARD_SCREENSHOTS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    await _contoso(stack)

    desktop = await new_context(viewport={"width": 1280, "height": 760})
    page = await sign_in(desktop, "contoso-admin")
    await expect(page.locator("#rows tr")).to_have_count(len(DEMO_KEYS))
    await expect(page.locator(".days-left:visible")).to_have_text(["13 days left"])
    for name in ("Emergency triage", "Night shift nurses"):
        await page.get_by_role("checkbox", name=f"Select {name}").check()
    await expect(page.locator("#rows tr.selected")).to_have_count(2)
    await expect(page.locator("#rows tr.selected").first).to_have_css("background-color", "rgb(230, 244, 231)")
    await page.mouse.move(0, 0)
    await page.screenshot(path=out / "api-keys-list.png")

    for name in ("Emergency triage", "Night shift nurses"):
        await page.get_by_role("checkbox", name=f"Select {name}").uncheck()
    await page.get_by_role("button", name="New").click()
    dialog = page.get_by_role("dialog", name="Add API Key")
    await dialog.get_by_label("Name").fill("Pediatrics ward 4")
    await dialog.get_by_label("Organization").select_option(label="\u2003Pediatrics")
    await dialog.get_by_role("button", name="Add API Key").click()
    await expect(page.get_by_role("dialog", name="API key created")).to_be_visible()
    await page.screenshot(path=out / "add-api-key.png")
    await page.get_by_role("button", name="Done").click()

    await page.locator("#rows tr", has_text="Night shift nurses").locator(".col-key").dblclick()
    await expect(page.get_by_role("heading", name="Edit API Key")).to_be_visible()
    if stack.has_notifier:
        for _ in range(40):
            notices = page.locator("#notices tbody tr", has_text="14 days before")
            if await notices.filter(has_text="sent").count():
                break
            await page.wait_for_timeout(500)
            await page.reload()
    await page.screenshot(path=out / "edit-api-key.png", full_page=True)

    phone = await new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    narrow = await sign_in(phone, "contoso-admin")
    await expect(narrow.locator("#rows tr")).to_have_count(len(DEMO_KEYS) + 1)
    await _no_sideways_scroll(narrow)
    await expect(narrow.get_by_role("button", name="New")).to_be_visible()
    await narrow.screenshot(path=out / "api-keys-narrow.png")
    await narrow.goto(narrow.url.replace("/keys", "/help/api-keys"))
    await _no_sideways_scroll(narrow)
