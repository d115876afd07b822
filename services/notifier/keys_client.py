"""What the notifier asks the keys service, which owns the directory: who to e-mail, and organization names.

Recipients are cached a few seconds only, so an e-mail goes to the directory as it stands when it is sent.
An `expiring` event is checked against the key's standing (`POST /v1/keys/standing`, one call per batch of
events) before any notice is recorded: Kafka is not what vouches for a key.
Organization names come with the `expiring` event; for an event without them, from
`GET /v1/organizations/{id}/path` (service token), cached longer: they rarely change, and the names are
kept on the notice once read.
"""

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx

from services.notifier.rendering import Recipient

log = logging.getLogger(__name__)


class KeysUnavailable(Exception):
    """The keys service did not answer as expected; the notice is looked at again later."""


# Key ids in one standing call at most (the keys service's bound); a consumer's batch is smaller.
STANDING_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Standing:
    """A key as the keys service says it stands now: what an e-mail about it says, whatever an event said."""

    key_id: UUID
    tenant_id: UUID | None
    organization_id: UUID
    organization_names: tuple[str, ...]
    name: str
    key_display: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    # Rolled keys (issue 21): the successor, and its first verify.
    replaced_by: UUID | None = None
    successor_in_use_since: datetime | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "Standing":
        tenant, successor, in_use = body.get("tenant_id"), body.get("replaced_by"), body.get("successor_in_use_since")
        return cls(
            key_id=UUID(body["key_id"]),
            tenant_id=UUID(tenant) if tenant else None,
            organization_id=UUID(body["organization_id"]),
            organization_names=tuple(body["organization_names"]),
            name=body["name"],
            key_display=body["key_display"],
            created_by=body["created_by"],
            created_at=datetime.fromisoformat(body["created_at"]),
            expires_at=datetime.fromisoformat(body["expires_at"]),
            replaced_by=UUID(successor) if successor else None,
            successor_in_use_since=datetime.fromisoformat(in_use) if in_use else None,
        )


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

    async def standings(self, key_ids: Iterable[UUID]) -> dict[UUID, Standing]:
        """The keys among `key_ids` that exist and have not expired, as they stand now, by id; one call per
        STANDING_CHUNK ids. A key left out does not exist (a forged event's), or no longer."""
        wanted = list(dict.fromkeys(key_ids))
        found: dict[UUID, Standing] = {}
        for start in range(0, len(wanted), STANDING_CHUNK):
            chunk = [str(k) for k in wanted[start : start + STANDING_CHUNK]]
            body = await self._request("POST", "/v1/keys/standing", json={"key_ids": chunk})
            try:
                for item in body["items"]:
                    standing = Standing.from_json(item)
                    found[standing.key_id] = standing
            except (KeyError, TypeError, ValueError) as exc:
                raise KeysUnavailable(f"the standing answer is malformed: {exc!r}") from exc
        return found

    async def ping(self) -> None:
        (await self._http.get("/healthz", timeout=2.0)).raise_for_status()

    async def close(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str) -> Any:
        return await self._request("GET", path)

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise KeysUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise KeysUnavailable(f"{method} {path} answered {response.status_code}: {response.text[:200]}")
        return response.json()


def _below_system(organizations: list[dict[str, Any]]) -> tuple[str, ...]:
    """Names of the organizations below the system root, which every e-mail would otherwise repeat."""
    return tuple(o["name"] for o in organizations if o.get("depth", 1) > 0 and o.get("parent_id") is not None)
