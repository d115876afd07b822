"""The keys service, as the reaper calls it: it owns the keys, so every deletion goes through it."""

import httpx

from services.reaper.schemas import ExpiryStatus, ReapResult


class KeysUnavailable(Exception):
    """The keys service did not answer as expected; the pass is retried."""


class KeysClient:
    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    async def reap(self, limit: int) -> ReapResult:
        return ReapResult.model_validate(await self._call("POST", "/v1/keys/reap", json={"limit": limit}))

    async def expiry_status(self) -> ExpiryStatus:
        return ExpiryStatus.model_validate(await self._call("GET", "/v1/keys/expiry-status"))

    async def ping(self) -> None:
        (await self._http.get("/healthz", timeout=2.0)).raise_for_status()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: object) -> object:
        try:
            response = await self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise KeysUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise KeysUnavailable(f"{method} {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()
