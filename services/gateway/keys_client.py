"""The keys service (keys, directory), as the gateway calls it for the signed-in administrator.

Errors from the keys service travel to the caller as they came (status and `{"error": ...}` body); a keys
service that fails or does not answer is a 503 with Retry-After (its own, or RETRY_AFTER_SECONDS). Exports go
over connections of their own (`exports`): a reader at 1 KB/s holds one for as long as it reads, and must never
hold one that pages and API calls need.
A call that finds no free connection within the client's pool timeout is a 503 with Retry-After.
"""

import logging
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from shared.auth import ACTING_ADMIN_HEADER, sign_acting_admin
from shared.errors import RETRY_AFTER_SECONDS, ApiError

log = logging.getLogger(__name__)

AUDIENCE = "keys"
SERVICE_NAME = "gateway"


def _busy() -> ApiError:
    return ApiError(
        503,
        "the keys service's connections are all in use: try again shortly",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def _retry_after(response: httpx.Response) -> dict[str, str] | None:
    """The keys service's Retry-After (its 429 for one export too many, its 503 when its pool is taken)."""
    value = response.headers.get("retry-after")
    return {"Retry-After": value} if value else None


def _unavailable(message: str, headers: dict[str, str] | None = None) -> ApiError:
    """A 503 for a keys service that is down, slow or failing: always with Retry-After, so that a client (or a
    load balancer) comes back rather than giving up (a replica restarting is the commonest outage)."""
    return ApiError(503, message, headers=headers or {"Retry-After": RETRY_AFTER_SECONDS})


def _error_from(response: httpx.Response) -> ApiError:
    headers = _retry_after(response)
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, str(error["message"]), str(error["code"]), error.get("fields"), headers)
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, "the request failed", headers=headers)


class KeysClient:
    def __init__(
        self, client: httpx.AsyncClient, exports: httpx.AsyncClient, token: str, acting_admin_secret: str
    ) -> None:
        self.client = client
        self.exports = exports
        self.token = token
        self.secret = acting_admin_secret

    def headers(self, username: str | None, method: str, path: str) -> dict[str, str]:
        """The token, and for an administrator a claim signed for this one request (method and path, used once)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if username is not None:
            headers[ACTING_ADMIN_HEADER] = sign_acting_admin(
                username, secret=self.secret, issuer=SERVICE_NAME, audience=AUDIENCE, method=method, path=path
            )
        return headers

    async def call(self, method: str, path: str, username: str | None, **kwargs: Any) -> httpx.Response:
        """The keys service's answer; raises ApiError for its errors (passed through) and for its outages (503)."""
        try:
            response = await self.client.request(method, path, headers=self.headers(username, method, path), **kwargs)
        except httpx.PoolTimeout:
            raise _busy() from None
        except httpx.TimeoutException:
            raise _unavailable("the keys service did not answer in time") from None
        except httpx.HTTPError as exc:
            log.warning("keys service unreachable: %s", exc)
            raise _unavailable("the keys service is unavailable") from None
        return self._checked(response)

    async def knows(self, username: str) -> bool | None:
        """Is `username` an administrator of the directory? None when the keys service cannot tell now."""
        try:
            await self.call("GET", "/v1/me", username)
        except ApiError as exc:
            return False if exc.status == 401 else None
        return True

    async def json(self, method: str, path: str, username: str | None, **kwargs: Any) -> Any:
        return (await self.call(method, path, username, **kwargs)).json()

    async def stream(self, path: str, username: str, params: dict[str, str]) -> AsyncGenerator[bytes]:
        """Opens a streamed GET on the exports' connections and checks its status before the first byte goes out;
        yields it unbuffered. The connection is freed when the iterator is closed (`aclose`), read or not."""
        request = self.exports.build_request("GET", path, headers=self.headers(username, "GET", path), params=params)
        try:
            response = await self.exports.send(request, stream=True)
        except httpx.PoolTimeout:
            raise _busy() from None
        except httpx.HTTPError:
            raise _unavailable("the keys service is unavailable") from None
        if response.is_error:
            await response.aread()
            await response.aclose()
            self._checked(response)

        async def body() -> AsyncGenerator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()

        return body()

    def _checked(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 500:
            log.warning("keys service answered %d: %s", response.status_code, response.text[:200])
            raise _unavailable("the keys service failed to answer", _retry_after(response))
        if response.is_error:
            raise _error_from(response)
        return response
