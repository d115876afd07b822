"""What a route is handed besides its parameters: the request's database connection and the service's context."""

from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from services.keys.context import KeysContext


async def connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """One pooled connection a request, shared by every dependency that asks (FastAPI solves it once), and
    held until the response is sent."""
    async with request.app.state.context.pool.acquire() as conn:
        yield conn


async def keys_context(request: Request) -> KeysContext:
    return request.app.state.context  # type: ignore[no-any-return]


Conn = Annotated[asyncpg.Connection, Depends(connection)]
Ctx = Annotated[KeysContext, Depends(keys_context)]
