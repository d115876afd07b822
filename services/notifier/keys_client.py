"""What the notifier asks the keys service, which owns the directory: who to e-mail, and organization names.

Recipients are cached a few seconds only, so an e-mail goes to the directory as it stands when it is sent.
Organization names come with the `expiring` event; for an event without them, from
`GET /v1/organizations/{id}/path` (service token), cached longer: they rarely change, and the names are
kept on the notice once read.
"""

import logging
import time
from typing import Any
from uuid import UUID

import httpx

from services.notifier.rendering import Recipient

log = logging.getLogger(__name__)


class KeysUnavailable(Exception):
    """The keys service did not answer as expected; the notice is looked at again later."""


class KeysClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float,
        recipients_ttl: float,
        organizations_ttl: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
        )
        self._recipients_ttl = recipients_ttl
        self._organizations_ttl = organizations_ttl
        self._recipients: dict[UUID, tuple[float, list[Recipient]]] = {}
        self._paths: dict[UUID, tuple[float, tuple[str, ...]]] = {}

    def cached_recipients(self, tenant_id: UUID) -> list[Recipient] | None:
        """The answer `recipients` would give without asking the keys service; None when it would ask."""
        cached = self._recipients.get(tenant_id)
        if cached and time.monotonic() - cached[0] < self._recipients_ttl:
            return cached[1]
        return None

    async def recipients(self, tenant_id: UUID) -> list[Recipient]:
        """The tenant's customer administrators at the tenant level, as the directory stood moments ago."""
        cached = self.cached_recipients(tenant_id)
        if cached is not None:
            return cached
        body = await self._get(f"/v1/tenants/{tenant_id}/customer-administrators")
        if not isinstance(body, list):
            raise KeysUnavailable("the customer-administrators answer is not a list")
        found = [
            Recipient(username=a["username"], email=a["email"], display_name=a.get("display_name") or a["username"])
            for a in body
            if a.get("level") == "tenant"
            and a.get("role") == "customer_administrator"
            and a.get("tenant_id") == str(tenant_id)
        ]
        self._recipients[tenant_id] = (time.monotonic(), found)
        return found

    async def organization_path(self, organization_id: UUID) -> tuple[str, ...]:
        """Names from the tenant down to the organization; () when the keys service does not know it."""
        cached = self._paths.get(organization_id)
        if cached and time.monotonic() - cached[0] < self._organizations_ttl:
            return cached[1]
        try:
            response = await self._http.get(f"/v1/organizations/{organization_id}/path")
        except httpx.HTTPError as exc:
            raise KeysUnavailable(f"organization path: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            return ()
        if response.status_code != 200:
            raise KeysUnavailable(f"organization path answered {response.status_code}: {response.text[:200]}")
        path = _below_system(response.json())
        self._paths[organization_id] = (time.monotonic(), path)
        return path

    async def ping(self) -> None:
        (await self._http.get("/healthz", timeout=2.0)).raise_for_status()

    async def close(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str) -> Any:
        try:
            response = await self._http.get(path)
        except httpx.HTTPError as exc:
            raise KeysUnavailable(f"GET {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise KeysUnavailable(f"GET {path} answered {response.status_code}: {response.text[:200]}")
        return response.json()


def _below_system(organizations: list[dict[str, Any]]) -> tuple[str, ...]:
    """Names of the organizations below the system root, which every e-mail would otherwise repeat."""
    return tuple(o["name"] for o in organizations if o.get("depth", 1) > 0 and o.get("parent_id") is not None)
