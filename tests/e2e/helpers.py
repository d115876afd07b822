"""Small steps the end-to-end tests share: data through the API, and what the page shows."""

import asyncio
from uuid import uuid4

from playwright.async_api import Page

from tests.e2e.conftest import Stack


def unique(prefix: str) -> str:
    return f"{prefix} {uuid4().hex[:8]}"


async def create_key(stack: Stack, username: str, organization: str, name: str) -> dict:
    async with stack.api(username) as api:
        response = await api.post(
            "/api/v1/keys", json={"name": name, "organization_id": stack.organizations[organization]}
        )
        assert response.status_code == 201, response.text
        return response.json()


async def create_keys(stack: Stack, username: str, organization: str, names: list[str]) -> list[dict]:
    """Many keys at once, a few requests in flight at a time."""
    limit = asyncio.Semaphore(8)
    async with stack.api(username) as api:

        async def one(name: str) -> dict:
            async with limit:
                body = {"name": name, "organization_id": stack.organizations[organization]}
                response = await api.post("/api/v1/keys", json=body)
            assert response.status_code == 201, response.text
            return response.json()

        return list(await asyncio.gather(*(one(n) for n in names)))


async def create_org(stack: Stack, username: str, parent_id: str, name: str) -> str:
    async with stack.api(username) as api:
        response = await api.post("/api/v1/organizations", json={"name": name, "parent_id": parent_id})
        assert response.status_code == 201, response.text
        return response.json()["id"]


async def search(page: Page, text: str) -> None:
    """Types into Search and waits for the list to follow (debounced on the page)."""
    await page.get_by_role("searchbox", name="Search").fill(text)
    await settled(page, "q", text.strip())


async def settled(page: Page, attribute: str, value: str) -> None:
    """Waits until the list has loaded for this search (`q`), organization or sort, and nothing is loading."""
    await page.wait_for_function(
        """([attribute, value]) => {
            const table = document.getElementById('keys-table');
            return table.dataset[attribute] === value && table.getAttribute('aria-busy') === 'false';
        }""",
        arg=[attribute, value],
    )


async def names(page: Page) -> list[str]:
    return await page.locator("#rows .key-name").all_text_contents()


def row(page: Page, name: str):
    return page.locator("#rows tr").filter(has=page.locator(".key-name", has_text=name))
