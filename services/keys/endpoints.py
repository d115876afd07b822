"""HTTP routes of the keys service: parse, authorize, call the service layer, shape the answer."""

from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response

from services.keys import roll, service
from services.keys.auth import SERVICE_ERRORS, AsNotifier, AsReaper, KeyManager, Service
from services.keys.dependencies import Conn, Ctx
from services.keys.schemas import (
    SORT_ALIASES,
    BulkDelete,
    BulkDeleted,
    ExpiryStatus,
    Key,
    KeyCreate,
    KeyPage,
    KeyRoll,
    KeyStandings,
    KeyUpdate,
    KeyWithSecret,
    ListQuery,
    ReapRequest,
    ReapResult,
    StandingQuery,
    VerifyRequest,
    VerifyResponse,
)
from shared.errors import ApiError, error_responses
from shared.streaming import BoundedStreamingResponse

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=SERVICE_ERRORS)
NOT_A_KEY_MANAGER = "The acting administrator is not a customer administrator"
NO_SUCH_KEY = "No such key, or it is outside the acting administrator's reach"
NO_SUCH_ORGANIZATION = "No such organization, or it is outside the acting administrator's reach"
NAME_TAKEN = "The organization has a key of that name (case-insensitive)"
CSV: dict[int | str, dict[str, Any]] = {
    200: {"description": "The CSV, streamed", "content": {"text/csv": {"schema": {"type": "string"}}}}
}
EXPORT_ERRORS = error_responses(
    described={
        429: "The administrator has `EXPORTS_PER_ADMIN` exports running, or this replica `EXPORTS_PER_REPLICA`: "
        "try again after `Retry-After` seconds"
    }
)
LIST_ERRORS = error_responses(
    422,
    described={
        400: "The cursor is malformed or from another sort order",
        403: NOT_A_KEY_MANAGER,
        404: NO_SUCH_ORGANIZATION,
    },
)


async def list_query(
    organization_id: UUID | None = None,
    # PostgreSQL's text holds no NUL: refused here, not a 500 from the export's audit row.
    q: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
    sort: Annotated[str, Query(json_schema_extra={"enum": list(SORT_ALIASES)})] = "name",
    order: Annotated[str, Query(json_schema_extra={"enum": ["asc", "desc"]})] = "asc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> ListQuery:
    field = SORT_ALIASES.get(sort)
    if field is None:
        raise ApiError(422, "unknown sort column", fields={"sort": f"one of {', '.join(sorted(SORT_ALIASES))}"})
    if order not in ("asc", "desc"):
        raise ApiError(422, "unknown order", fields={"order": "asc or desc"})
    return ListQuery(organization_id=organization_id, q=q or None, sort=field, order=order, limit=limit, cursor=cursor)  # type: ignore[arg-type]


Listing = Annotated[ListQuery, Depends(list_query)]


async def export_slot(actor: KeyManager, ctx: Ctx) -> AsyncIterator[None]:
    """One of the administrator's and the replica's export slots, held until the response has ended."""
    with ctx.exports.take(actor.username):
        yield


ExportSlot = Annotated[None, Depends(export_slot)]


@router.post(
    "/verify", response_model=VerifyResponse, response_model_exclude_none=True, responses=error_responses(400, 413, 422)
)
async def verify(body: VerifyRequest, _: Service, ctx: Ctx) -> Response:
    """Checks a key presented by a voice client; the same answer shape for every invalid key."""
    return Response(await service.verify(ctx, body.key), media_type="application/json")


@router.post(
    "/reap",
    response_model=ReapResult,
    responses=error_responses(400, 413, 422, described={403: "The calling service is not the reaper"}),
)
async def reap(body: ReapRequest, _: AsReaper, conn: Conn, ctx: Ctx) -> ReapResult:
    """For the reaper: deletes a batch of expired keys, each with its `deleted` event (reason expired)."""
    deleted = await service.reap_expired(conn, ctx, body.limit)
    return ReapResult(deleted=deleted, more=deleted == body.limit)


@router.get("/expiry-status", response_model=ExpiryStatus)
async def expiry_status(_: AsReaper, conn: Conn) -> ExpiryStatus:
    """For the reaper: the oldest expired key still present, how many there are, and the next key to expire."""
    return await service.expiry_status(conn)


@router.post(
    "/standing",
    response_model=KeyStandings,
    responses=error_responses(400, 413, 422, described={403: "The calling service is not the notifier"}),
)
async def key_standings(body: StandingQuery, _: AsNotifier, conn: Conn) -> KeyStandings:
    """For the notifier: the keys asked for that exist and have not expired, as they stand now (tenant,
    organization, name, expiry), so that an e-mail says what the keys service says, not what an event said."""
    return await service.standings(conn, body.key_ids)


@router.get("", response_model=KeyPage, responses=LIST_ERRORS)
async def list_keys(actor: KeyManager, conn: Conn, query: Listing) -> Response:
    """Keys at and below an organization, searched, sorted and keyset-paginated."""
    return Response(await service.list_keys(conn, actor, query), media_type="application/json")


@router.get(
    "/export.csv",
    response_class=Response,  # the documents' media type (text/csv) is the 200's below
    responses=CSV | LIST_ERRORS | EXPORT_ERRORS,
)
async def export_keys(
    actor: KeyManager, _: ExportSlot, conn: Conn, ctx: Ctx, query: Listing
) -> BoundedStreamingResponse:
    """Every key the list shows for this filter, with the full key, as a streamed CSV. A stream cut off by
    `EXPORT_DEADLINE` or `EXPORT_STALL_TIMEOUT` ends without HTTP's last chunk (the download fails)."""
    body = await service.export_keys(conn, ctx, actor, query)
    return BoundedStreamingResponse(
        body,
        deadline=ctx.settings.export_deadline.total_seconds(),
        stall_timeout=ctx.settings.export_stall_timeout.total_seconds(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="api-keys.csv"', "Cache-Control": "no-store"},
        what=f"export of {actor.username}",
    )


@router.post(
    "",
    response_model=KeyWithSecret,
    status_code=201,
    responses=error_responses(
        400, 413, 422, described={403: NOT_A_KEY_MANAGER, 404: NO_SUCH_ORGANIZATION, 409: NAME_TAKEN}
    ),
)
async def create_key(body: KeyCreate, actor: KeyManager, conn: Conn, ctx: Ctx, response: Response) -> KeyWithSecret:
    """Creates a key; the answer is the only one, with the export, that carries the full key unasked."""
    created = await service.create_key(conn, ctx, actor, body)
    response.headers["Cache-Control"] = "no-store"
    return created


@router.post(
    "/bulk-delete",
    response_model=BulkDeleted,
    responses=error_responses(
        400,
        413,
        422,
        described={
            403: NOT_A_KEY_MANAGER,
            404: "One of the keys does not exist or is outside the acting administrator's reach (the message "
            "names them): none is deleted",
        },
    ),
)
async def bulk_delete(body: BulkDelete, actor: KeyManager, conn: Conn, ctx: Ctx) -> BulkDeleted:
    """Deletes several keys in one transaction: all of them, or none."""
    return BulkDeleted(deleted=await service.delete_keys(conn, ctx, actor, body.ids, "bulk"))


@router.get(
    "/{key_id:uuid}",
    response_model=KeyWithSecret,
    responses=error_responses(422, described={403: NOT_A_KEY_MANAGER, 404: NO_SUCH_KEY}),
)
async def get_key(key_id: UUID, actor: KeyManager, conn: Conn, ctx: Ctx, response: Response) -> KeyWithSecret:
    """One key with the full key; the reveal is audited."""
    key = await service.reveal_key(conn, ctx, actor, key_id)
    response.headers["Cache-Control"] = "no-store"
    return key


@router.post(
    "/{key_id:uuid}/roll",
    response_model=KeyWithSecret,
    status_code=201,
    responses=error_responses(
        400,
        413,
        422,
        described={403: NOT_A_KEY_MANAGER, 404: NO_SUCH_KEY + ", or it has expired", 409: roll.ALREADY_ROLLED},
    ),
)
async def roll_key(
    key_id: UUID, actor: KeyManager, conn: Conn, ctx: Ctx, response: Response, body: KeyRoll | None = None
) -> KeyWithSecret:
    """Rolls a key: a successor of the same name and organization with a full lifetime (its full key in this
    answer only, `replaces` naming the key rolled), the key rolled verifying until the overlap ends."""
    overlap = body.overlap if body and body.overlap is not None else ctx.settings.rotation_overlap
    rolled = await roll.roll_key(conn, ctx, actor, key_id, overlap)
    response.headers["Cache-Control"] = "no-store"
    return rolled


@router.patch(
    "/{key_id:uuid}",
    response_model=Key,
    responses=error_responses(400, 413, 422, described={403: NOT_A_KEY_MANAGER, 404: NO_SUCH_KEY, 409: NAME_TAKEN}),
)
async def rename_key(key_id: UUID, body: KeyUpdate, actor: KeyManager, conn: Conn, ctx: Ctx) -> Key:
    """Renames a key."""
    return await service.rename_key(conn, ctx, actor, key_id, body.name)


@router.delete(
    "/{key_id:uuid}",
    status_code=204,
    responses=error_responses(422, described={403: NOT_A_KEY_MANAGER, 404: NO_SUCH_KEY}),
)
async def delete_key(key_id: UUID, actor: KeyManager, conn: Conn, ctx: Ctx) -> Response:
    """Deletes a key for good."""
    await service.delete_keys(conn, ctx, actor, [key_id], "manual")
    return Response(status_code=204)
