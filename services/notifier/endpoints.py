"""HTTP routes of the notifier: the notices of keys, for the gateway (a service token is required)."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from services.notifier import service
from services.notifier.dependencies import Ctx, Reader
from services.notifier.schemas import MAX_KEYS_PER_QUERY, NoticeList, NoticeQuery

router = APIRouter(prefix="/v1", tags=["notices"])


@router.get("/keys/{key_id}/notices", response_model=NoticeList)
async def key_notices(key_id: UUID, _: Reader, ctx: Ctx) -> NoticeList:
    """The expiry notices of one key: per threshold and recipient, pending, sent, failed or cancelled."""
    return await service.notices_of(ctx.pool, [key_id])


@router.post("/notices/query", response_model=NoticeList)
async def query_notices(body: NoticeQuery, _: Reader, ctx: Ctx) -> NoticeList:
    """The expiry notices of many keys at once (a list page); the caller asks only for keys it may show."""
    return await service.notices_of(ctx.pool, list(dict.fromkeys(body.key_ids)))


@router.get("/notices", response_model=NoticeList)
async def list_notices(
    _: Reader, ctx: Ctx, key_id: Annotated[list[UUID], Query(min_length=1, max_length=MAX_KEYS_PER_QUERY)]
) -> NoticeList:
    """The same as POST /v1/notices/query, with repeated `key_id` parameters."""
    return await service.notices_of(ctx.pool, list(dict.fromkeys(key_id)))
