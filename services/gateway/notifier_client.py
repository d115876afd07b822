"""The notifier, as the gateway calls it: the expiry notices of a key. Optional: without it, notices are
unknown and the console says so."""

from typing import Any
from uuid import UUID

import httpx


class NotifierClient:
    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    async def notices(self, key_id: UUID) -> list[dict[str, Any]] | None:
        """The expiry notices sent for a key, or None when the notifier cannot tell (down, failing, absent)."""
        try:
            response = await self.client.get(f"/v1/keys/{key_id}/notices", headers=self.headers)
            if response.status_code != 200:
                return None
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        items = body.get("items") if isinstance(body, dict) else body
        if not isinstance(items, list):
            return None
        return [_notice(n) for n in items if isinstance(n, dict)]


def _notice(raw: dict[str, Any]) -> dict[str, Any]:
    return {name: raw.get(name) for name in ("threshold_seconds", "recipient", "status", "sent_at")}
