"""HTTP routes of the notifier: the notices of keys, for the gateway (a service token is required)."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request

from services.notifier import repository
from services.notifier.metrics import threshold_label
from services.notifier.schemas import MAX_KEYS_PER_QUERY, Notice, NoticeList, NoticeQuery
from shared.auth import ServiceTokens
from shared.errors import ApiError


def notices_reader(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    tokens: ServiceTokens = request.app.state.service_tokens
    service = tokens.service_for(authorization)
    if service is None:
        raise ApiError(401, "a valid service token is required")
    if service not in request.app.state.settings.notices_readers:
        raise ApiError(403, "this service may not read notices")
    return service


Reader = Annotated[str, Depends(notices_reader)]

router = APIRouter(prefix="/v1", tags=["notices"])


async def _notices(request: Request, key_ids: list[UUID]) -> NoticeList:
    rows = await repository.notices_of(request.app.state.pool, key_ids)
    return NoticeList(
        items=[
            Notice(
                key_id=r["key_id"],
                threshold_seconds=r["threshold_seconds"],
                threshold=threshold_label(r["threshold_seconds"]),
                recipient=r["email"],
                username=r["username"],
                display_name=r["display_name"],
                status=r["status"],
                attempts=r["attempts"],
                sent_at=r["sent_at"],
                last_error=r["last_error"],
                announced_at=r["announced_at"],
                updated_at=r["updated_at"],
            )
            for r in rows
        ]
    )


@router.get("/keys/{key_id}/notices", response_model=NoticeList)
async def key_notices(key_id: UUID, _: Reader, request: Request) -> NoticeList:
    """The expiry notices of one key: per threshold and recipient, pending, sent, failed or cancelled."""
    return await _notices(request, [key_id])


@router.post("/notices/query", response_model=NoticeList)
async def query_notices(body: NoticeQuery, _: Reader, request: Request) -> NoticeList:
    """The expiry notices of many keys at once (a list page); the caller asks only for keys it may show."""
    return await _notices(request, list(dict.fromkeys(body.key_ids)))


@router.get("/notices", response_model=NoticeList)
async def list_notices(
    _: Reader, request: Request, key_id: Annotated[list[UUID], Query(min_length=1, max_length=MAX_KEYS_PER_QUERY)]
) -> NoticeList:
    """The same as POST /v1/notices/query, with repeated `key_id` parameters."""
    return await _notices(request, list(dict.fromkeys(key_id)))
