"""The gateway's JSON API under /api/v1: authenticate, call the keys service and the notifier, shape the answer."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from services.gateway.dependencies import Admin, Ctx, Discloser, still_signed_in
from services.gateway.schemas import (
    EXPORT_PARAMETERS,
    LIST_PARAMETERS,
    AdministratorCreate,
    BulkDelete,
    KeyCreate,
    KeyRoll,
    KeyUpdate,
    OrganizationCreate,
    organization_tree,
)
from shared.errors import ApiError, error_responses
from shared.streaming import BoundedStreamingResponse

# Every call's error answers; each route adds its own, its own and the keys service's (passed through).
router = APIRouter(
    prefix="/api/v1",
    tags=["console"],
    responses=error_responses(
        401,
        500,
        503,
        described={
            401: "A valid bearer JWT (or, in development, the console's session) is required, naming an "
            "administrator of the directory",
            503: "The keys service failed or did not answer",
        },
    ),
)
NOT_A_KEY_MANAGER = "The administrator is not a customer administrator"
CHANGE_REFUSED = f"{NOT_A_KEY_MANAGER}, or (a console session) the CSRF token is missing or wrong (`csrf_failed`)"
NO_SUCH_KEY = "No such key, or it is outside the administrator's reach"
NO_SUCH_ORGANIZATION = "No such organization, or it is outside the administrator's reach"
NAME_TAKEN = "The organization has a key of that name (case-insensitive)"
ALREADY_ROLLED = "The key was already rolled"
LIST_ERRORS = error_responses(
    422,
    described={
        400: "The cursor is malformed or from another sort order",
        403: NOT_A_KEY_MANAGER,
        404: NO_SUCH_ORGANIZATION,
    },
)
CSV: dict[int | str, dict[str, Any]] = {
    200: {"description": "The CSV, streamed", "content": {"text/csv": {"schema": {"type": "string"}}}}
}
# Server-Sent Events, one item a event (OpenAPI 3.2's `itemSchema`): `ready` first (data `{}`), then `key`.
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `ready`, then a `key` event for each change the administrator may see",
        "content": {
            "text/event-stream": {
                "itemSchema": {
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                        "event": {"type": "string", "enum": ["ready", "key"]},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {
                                "type": "object",
                                "properties": {
                                    "type": {"enum": ["created", "updated", "expiring", "deleted", "resync"]},
                                    "key_id": {"type": "string", "format": "uuid"},
                                    "organization_id": {"type": "string", "format": "uuid"},
                                    "name": {"type": "string"},
                                },
                            },
                        },
                        "retry": {"type": "integer", "minimum": 0},
                    },
                }
            }
        },
    }
}

LIST_PARAMS = ("organization_id", "q", "sort", "order", "limit", "cursor")
EXPORT_PARAMS = ("organization_id", "q", "sort", "order")
NO_STORE = {"Cache-Control": "no-store"}


def _params(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    return {name: request.query_params[name] for name in names if name in request.query_params}


def _pass_through(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


@router.get("/me")
async def me(admin: Admin, ctx: Ctx) -> Response:
    """The signed-in administrator, as the directory knows them."""
    return _pass_through((await ctx.keys.call("GET", "/v1/me", admin.username)).content)


@router.get("/organizations")
async def organizations(admin: Admin, ctx: Ctx) -> list[dict[str, Any]]:
    """The organization tree the caller can see: their topmost organizations, each with its `children`."""
    return organization_tree(await ctx.keys.json("GET", "/v1/organizations", admin.username))


@router.post(
    "/organizations",
    status_code=201,
    responses=error_responses(
        400,
        413,
        422,
        described={
            403: CHANGE_REFUSED,
            404: NO_SUCH_ORGANIZATION,
            409: "The parent has an organization of that name (case-insensitive)",
        },
    ),
)
async def create_organization(body: OrganizationCreate, admin: Admin, ctx: Ctx) -> Response:
    """Creates an organization below one the caller reaches."""
    upstream = await ctx.keys.call("POST", "/v1/organizations", admin.username, json=body.upstream())
    return _pass_through(upstream.content, 201)


@router.post(
    "/administrators",
    status_code=201,
    responses=error_responses(
        400,
        413,
        described={
            403: f"{CHANGE_REFUSED}, or a tenant-level administrator creating a system-level one",
            404: NO_SUCH_ORGANIZATION,
            409: "The username is taken",
            422: "A field is invalid (`fields` names each), or the level does not fit the organization: a "
            "system-level administrator belongs to the system organization, a tenant-level one to a tenant or "
            "an organization below one",
        },
    ),
)
async def create_administrator(body: AdministratorCreate, admin: Admin, ctx: Ctx) -> Response:
    """Creates an administrator in an organization the caller reaches."""
    upstream = await ctx.keys.call("POST", "/v1/administrators", admin.username, json=body.upstream())
    return _pass_through(upstream.content, 201)


@router.get("/keys", responses=LIST_ERRORS, openapi_extra={"parameters": LIST_PARAMETERS})
async def list_keys(request: Request, admin: Admin, ctx: Ctx) -> Response:
    """Keys at and below `organization_id`, filtered by `q`, sorted, keyset-paginated: {items, next_cursor, total}."""
    upstream = await ctx.keys.call("GET", "/v1/keys", admin.username, params=_params(request, LIST_PARAMS))
    return _pass_through(upstream.content, headers=NO_STORE)


@router.post(
    "/keys",
    status_code=201,
    responses=error_responses(
        400, 413, 422, described={403: CHANGE_REFUSED, 404: NO_SUCH_ORGANIZATION, 409: NAME_TAKEN}
    ),
)
async def create_key(body: KeyCreate, admin: Admin, ctx: Ctx) -> Response:
    """Creates a key; the answer carries the full key."""
    upstream = await ctx.keys.call("POST", "/v1/keys", admin.username, json=body.upstream())
    return _pass_through(upstream.content, 201, NO_STORE)


@router.get(
    "/keys/export.csv",
    response_class=Response,  # the documents' media type (text/csv) is the 200's below
    responses=CSV | LIST_ERRORS,
    openapi_extra={"parameters": EXPORT_PARAMETERS},
)
async def export_keys(request: Request, admin: Discloser, ctx: Ctx) -> BoundedStreamingResponse:
    """Every key the list shows for this filter, with the full key, streamed as CSV."""
    body = await ctx.keys.stream("/v1/keys/export.csv", admin.username, _params(request, EXPORT_PARAMS))
    headers = {"Content-Disposition": 'attachment; filename="api-keys.csv"', **NO_STORE}
    # A reader that stops reading is let go, and the exports' connection it held to the keys service freed.
    return BoundedStreamingResponse(
        body,
        deadline=ctx.settings.export_deadline.total_seconds(),
        stall_timeout=ctx.settings.export_stall_timeout.total_seconds(),
        media_type="text/csv; charset=utf-8",
        headers=headers,
        what="export",
    )


@router.post(
    "/keys/bulk-delete",
    responses=error_responses(
        400,
        413,
        422,
        described={
            403: CHANGE_REFUSED,
            404: "One of the keys does not exist or is outside the administrator's reach (the message names "
            "them): none is deleted",
        },
    ),
)
async def bulk_delete(body: BulkDelete, admin: Admin, ctx: Ctx) -> Response:
    """Deletes several keys in one transaction: all of them, or none (404 naming the ones not found)."""
    upstream = await ctx.keys.call("POST", "/v1/keys/bulk-delete", admin.username, json=body.upstream())
    return _pass_through(upstream.content)


@router.get("/keys/{key_id:uuid}", responses=error_responses(422, described={403: NOT_A_KEY_MANAGER, 404: NO_SUCH_KEY}))
async def get_key(key_id: UUID, admin: Discloser, ctx: Ctx) -> JSONResponse:
    """One key with the full key (the reveal is audited) and the expiry notices sent for it."""
    key_call = ctx.keys.json("GET", f"/v1/keys/{key_id}", admin.username)
    key, notices = await asyncio.gather(key_call, ctx.notifier.notices(key_id), return_exceptions=True)
    if isinstance(key, BaseException):
        raise key
    if isinstance(notices, list):
        key["notices"] = notices
    else:
        key["notices_unavailable"] = True
    return JSONResponse(key, headers=NO_STORE)


@router.post(
    "/keys/{key_id:uuid}/roll",
    status_code=201,
    responses=error_responses(
        400, 413, 422, described={403: CHANGE_REFUSED, 404: NO_SUCH_KEY + ", or it has expired", 409: ALREADY_ROLLED}
    ),
)
async def roll_key(key_id: UUID, admin: Admin, ctx: Ctx, body: KeyRoll | None = None) -> Response:
    """Rolls a key: the answer is its successor (same name and organization, a full lifetime) with its full key;
    the key rolled goes on verifying until the overlap ends."""
    upstream = await ctx.keys.call(
        "POST", f"/v1/keys/{key_id}/roll", admin.username, json=body.upstream() if body else {}
    )
    return _pass_through(upstream.content, 201, NO_STORE)


@router.patch(
    "/keys/{key_id:uuid}",
    responses=error_responses(400, 413, 422, described={403: CHANGE_REFUSED, 404: NO_SUCH_KEY, 409: NAME_TAKEN}),
)
async def rename_key(key_id: UUID, body: KeyUpdate, admin: Admin, ctx: Ctx) -> Response:
    """Renames a key."""
    return _pass_through(
        (await ctx.keys.call("PATCH", f"/v1/keys/{key_id}", admin.username, json=body.upstream())).content
    )


@router.delete(
    "/keys/{key_id:uuid}",
    status_code=204,
    responses=error_responses(422, described={403: CHANGE_REFUSED, 404: NO_SUCH_KEY}),
)
async def delete_key(key_id: UUID, admin: Admin, ctx: Ctx) -> Response:
    """Deletes a key for good."""
    await ctx.keys.call("DELETE", f"/v1/keys/{key_id}", admin.username)
    return Response(status_code=204)


@router.get(
    "/events",
    response_class=Response,  # the documents' media type (text/event-stream) is the 200's below
    responses=EVENT_STREAM | error_responses(described={403: NOT_A_KEY_MANAGER}),
)
async def events(admin: Admin, ctx: Ctx) -> EventSourceResponse:
    """Server-Sent Events: a `key` event whenever a key the caller may see is created, renamed, expiring or deleted."""
    me = await ctx.keys.json("GET", "/v1/me", admin.username)
    if me["role"] != "customer_administrator":
        raise ApiError(403, "only customer administrators manage API keys")
    system = me["level"] == "system"
    tenant_id = UUID(me["tenant_id"]) if me.get("tenant_id") else None
    lifetime = ctx.settings.events_stream_lifetime.total_seconds()
    if admin.expires_at is not None:  # a stream ends with its session; the reconnect is then refused
        lifetime = min(lifetime, max(1.0, admin.expires_at - time.time()))

    recheck = ctx.settings.session_recheck_interval.total_seconds()

    async def stream() -> AsyncIterator[dict[str, Any]]:
        with ctx.live.subscribe(system=system, tenant_id=tenant_id) as subscriber:
            yield {"event": "ready", "data": "{}", "retry": 2000}
            clock = asyncio.get_running_loop().time
            deadline = clock() + lifetime
            next_check = clock() + recheck
            while (remaining := deadline - clock()) > 0:
                try:
                    message = await asyncio.wait_for(subscriber.queue.get(), min(remaining, next_check - clock()))
                except TimeoutError:
                    # Signed out elsewhere, or gone from the directory: the stream ends within a recheck.
                    if clock() >= next_check and not await still_signed_in(ctx, admin):
                        return
                    next_check = clock() + recheck
                    continue
                yield {"event": "key", "data": json.dumps(message)}

    return EventSourceResponse(stream(), ping=15, headers={**NO_STORE, "X-Accel-Buffering": "no"})
