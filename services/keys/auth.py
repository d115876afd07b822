"""Who is calling: a platform service (bearer token), and the administrator it acts for (signed claim).

Both headers are read from the request, not declared as `Header()` parameters: FastAPI extracts and
validates declared parameters anew on every request, a cost the list call showed (docs/benchmarks.md).
A missing or malformed header is an ordinary 401 here either way.
"""

from typing import Annotated

from fastapi import Depends, Request

from services.keys.context import KeysContext
from services.keys.dependencies import Conn
from services.keys.directory import service as directory
from services.keys.directory.service import Actor
from shared.auth import ACTING_ADMIN_HEADER, verify_acting_admin
from shared.errors import ApiError, error_responses

AUDIENCE = "keys"
# The error answers every call of the service may give (its routers' `responses=`); each route adds its own.
SERVICE_ERRORS = error_responses(
    401,
    500,
    503,
    described={
        401: "A valid service token is required, and for an administrator's call a valid `X-Acting-Admin` "
        "naming an administrator of the directory"
    },
)


async def calling_service(request: Request) -> str:
    ctx: KeysContext = request.app.state.context
    service = ctx.service_tokens.service_for(request.headers.get("authorization"))
    if service is None:
        raise ApiError(401, "a valid service token is required")
    return service


Service = Annotated[str, Depends(calling_service)]


async def acting_admin(request: Request, service: Service, conn: Conn) -> Actor:
    """On the request's own connection (`Conn` is solved once a request), so a call holds one at a time."""
    acting = request.headers.get(ACTING_ADMIN_HEADER)
    if not acting:
        raise ApiError(401, f"the {ACTING_ADMIN_HEADER} header is required for this call")
    claim = verify_acting_admin(
        acting, secret=request.app.state.context.settings.acting_admin_secret, service=service, audience=AUDIENCE
    )
    if claim is None:
        raise ApiError(401, f"the {ACTING_ADMIN_HEADER} claim is invalid or expired")
    try:
        actor = await directory.find_actor(conn, claim.username)
    except directory.NoTenant:
        raise ApiError(401, "the acting administrator has no tenant") from None
    if actor is None:
        raise ApiError(401, "the acting administrator is not in the directory")
    return actor


CurrentActor = Annotated[Actor, Depends(acting_admin)]


async def key_manager(actor: CurrentActor) -> Actor:
    if not actor.manages_keys:
        raise ApiError(403, "only customer administrators manage API keys")
    return actor


KeyManager = Annotated[Actor, Depends(key_manager)]
