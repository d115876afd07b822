"""Who is calling: a platform service (bearer token), and the administrator it acts for (signed claim).

Both headers are read from the request, not declared as `Header()` parameters: FastAPI extracts and
validates declared parameters anew on every request, a cost the list call showed (docs/benchmarks.md).
A missing or malformed header is an ordinary 401 here either way.
"""

from typing import Annotated

from fastapi import Depends, Request

from services.keys import service as keys_service
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
        "naming an administrator of the directory, signed for this method and path, used once",
        403: "The calling service may not make this call (a token of another name than the call's service: "
        "administrators' calls are the gateway's, the directory reads the notifier's, reaping the reaper's)",
    },
)


# What a caller may do besides verify, by its name in SERVICE_TOKENS; any other name (a voice client's) may
# only verify. A call outside the caller's scope is a 403, the same on every route.
GATEWAY, NOTIFIER, REAPER = "gateway", "notifier", "reaper"


async def calling_service(request: Request) -> str:
    ctx: KeysContext = request.app.state.context
    service = ctx.service_tokens.service_for(request.headers.get("authorization"))
    if service is None:
        raise ApiError(401, "a valid service token is required")
    return service


Service = Annotated[str, Depends(calling_service)]


def scope(name: str) -> object:
    """A dependency: the call is `name`'s to make (403 otherwise)."""

    async def check(service: Service) -> str:
        if service != name:
            raise ApiError(403, f"this call is for the {name} service; this token may not make it")
        return service

    return Depends(check)


AsGateway = Annotated[str, scope(GATEWAY)]
AsNotifier = Annotated[str, scope(NOTIFIER)]
AsReaper = Annotated[str, scope(REAPER)]


async def acting_admin(request: Request, service: AsGateway, conn: Conn) -> Actor:
    """On the request's own connection (`Conn` is solved once a request), so a call holds one at a time.

    Only the gateway acts for administrators; its claim must be for this method and path, and new."""
    acting = request.headers.get(ACTING_ADMIN_HEADER)
    if not acting:
        raise ApiError(401, f"the {ACTING_ADMIN_HEADER} header is required for this call")
    claim = verify_acting_admin(
        acting,
        secret=request.app.state.context.settings.acting_admin_secret,
        service=service,
        audience=AUDIENCE,
        method=request.method,
        path=request.url.path,
    )
    if claim is None:
        raise ApiError(401, f"the {ACTING_ADMIN_HEADER} claim is invalid, expired, or for another call")
    if not await keys_service.first_use_of_claim(conn, claim.jti, claim.expires_at):
        raise ApiError(401, f"the {ACTING_ADMIN_HEADER} claim was already used")
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
