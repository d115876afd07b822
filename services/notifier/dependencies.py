"""What a route is handed besides its parameters: the notifier's context and the calling service."""

from typing import Annotated

from fastapi import Depends, Header, Request

from services.notifier.context import NotifierContext
from shared.app import context_of
from shared.errors import ApiError


def notifier_context(request: Request) -> NotifierContext:
    return context_of(request)  # type: ignore[no-any-return]


Ctx = Annotated[NotifierContext, Depends(notifier_context)]


def notices_reader(ctx: Ctx, authorization: Annotated[str | None, Header()] = None) -> str:
    caller = ctx.notices_readers.service_for(authorization)
    if caller is None:
        raise ApiError(401, "a token of NOTICES_TOKENS is required")
    return caller


Reader = Annotated[str, Depends(notices_reader)]
