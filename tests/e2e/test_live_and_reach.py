"""Pages update live; a tenant administrator reaches nothing of another tenant, however they try."""

from playwright.async_api import BrowserContext, expect

from tests.fixtures.console import names, row, search, sign_in
from tests.fixtures.random_refs import unique
from tests.fixtures.stack import Stack


async def test_a_second_browser_sees_keys_appear_change_and_go_without_reloading(new_context, stack: Stack):
    tag = unique("live").split()[1]
    watcher = await sign_in(await new_context(), "acme-admin")
    await search(watcher, tag)
    await expect(watcher.locator("#rows tr")).to_have_count(0)
    other = await sign_in(await new_context(), "acme-ops")
    await other.get_by_role("button", name="New").click()
    dialog = other.get_by_role("dialog", name="Add API Key")
    await dialog.get_by_label("Name").fill(f"{tag} appears")
    await dialog.get_by_role("button", name="Add API Key").click()
    await expect(other.get_by_role("dialog", name="API key created")).to_be_visible()
    await expect(watcher.locator("#rows .key-name")).to_have_text([f"{tag} appears"], timeout=15_000)
    async with stack.api("acme-ops") as api:
        key_id = await watcher.locator("#rows tr").get_attribute("data-id")
        assert (await api.patch(f"/api/v1/keys/{key_id}", json={"name": f"{tag} renamed"})).status_code == 200
        await expect(watcher.locator("#rows .key-name")).to_have_text([f"{tag} renamed"], timeout=15_000)
        assert (await api.delete(f"/api/v1/keys/{key_id}")).status_code == 204
    await expect(watcher.locator("#rows tr")).to_have_count(0, timeout=15_000)


async def test_a_tenant_administrator_cannot_reach_another_tenants_key(context: BrowserContext, stack: Stack):
    theirs = await stack.create_key("globex-admin", "North Campus", unique("Globex secret"))
    page = await sign_in(context, "acme-admin")
    menu = await page.get_by_role("combobox", name="Organization", exact=True).locator("option").all_text_contents()
    assert not any("Globex" in o or "Campus" in o for o in menu)
    await search(page, theirs["name"])
    assert await names(page) == []
    await search(page, "Campus")
    assert await names(page) == []
    response = await page.goto(f"/keys/{theirs['id']}")
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", name="API key not found")).to_be_visible()
    assert theirs["key"] not in await page.content()
    calls = {
        "get": f"fetch('/api/v1/keys/{theirs['id']}')",
        "export": f"fetch('/api/v1/keys/export.csv?organization_id={stack.organizations['North Campus']}')",
        "list": f"fetch('/api/v1/keys?organization_id={stack.organizations['Globex Clinics']}')",
    }
    for what, call in calls.items():
        assert await page.evaluate(f"{call}.then(r => r.status)") == 404, what
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    for method in ("PATCH", "DELETE"):
        status = await page.evaluate(
            """([url, method, token]) => fetch(url, {method, headers: {'X-CSRF-Token': token,
               'Content-Type': 'application/json'}, body: method === 'PATCH' ? '{"name": "x"}' : undefined})
               .then(r => r.status)""",
            [f"/api/v1/keys/{theirs['id']}", method, token],
        )
        assert status == 404, method
    async with stack.api("globex-admin") as api:
        assert (await api.get(f"/api/v1/keys/{theirs['id']}")).json()["name"] == theirs["name"]


async def test_a_system_administrator_sees_every_tenants_keys(context: BrowserContext, stack: Stack):
    tag = unique("everyone").split()[1]
    await stack.create_key("globex-admin", "North Campus", f"{tag} globex")
    await stack.create_key("acme-admin", "Radiology", f"{tag} acme")
    page = await sign_in(context, "admin")
    await search(page, tag)
    assert await names(page) == [f"{tag} acme", f"{tag} globex"]
    await expect(row(page, f"{tag} globex").locator(".col-org")).to_have_text("North Campus")


async def test_a_live_update_leaves_unchanged_rows_alone(context: BrowserContext, stack: Stack):
    tag = unique("steady").split()[1]
    await stack.create_key("acme-admin", "Cardiology", f"{tag} first")
    page = await sign_in(context, "acme-admin")
    await search(page, tag)
    await expect(page.locator("#rows .key-name")).to_have_text([f"{tag} first"])
    # Mark the row element itself: a re-render would replace it and lose the mark.
    await page.locator("#rows tr").first.evaluate("tr => { tr.steady = true; }")
    await page.get_by_role("checkbox", name=f"Select {tag} first").focus()
    await stack.create_key("acme-ops", "Cardiology", f"{tag} second")
    await expect(page.locator("#rows .key-name")).to_have_text([f"{tag} first", f"{tag} second"], timeout=15_000)
    assert await page.locator("#rows tr").first.evaluate("tr => tr.steady === true")
    await expect(page.get_by_role("checkbox", name=f"Select {tag} first")).to_be_focused()
