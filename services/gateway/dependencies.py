"""FastAPI dependencies: the gateway's context and the calling administrator."""

from typing import Annotated

from fastapi import Depends, Request

from services.gateway.auth import CSRF_HEADER, SAFE_METHODS, Principal, tokens_match
from services.gateway.context import GatewayContext
from services.gateway.sessions import Session
from shared.app import context_of
from shared.errors import ApiError

EVENTS_PATH = "/api/v1/events"


def gateway_context(request: Request) -> GatewayContext:
    return context_of(request)  # type: ignore[no-any-return]


Ctx = Annotated[GatewayContext, Depends(gateway_context)]


async def console_session(request: Request, ctx: GatewayContext, *, touch: bool = True) -> Session | None:
    """The console session whose id the browser's cookie carries (AUTH_MODE=dev or oidc), if it is live."""
    if ctx.sessions is None:
        return None
    return await ctx.sessions.find(request.cookies.get(ctx.sessions.cookie_name), touch=touch)


async def api_principal(request: Request, ctx: Ctx) -> Principal:
    """A bearer JWT, or the console's session; the latter needs the CSRF token to change anything."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        claims = await ctx.verifier.claims(token.strip()) if scheme.lower() == "bearer" else None
        if claims is None:
            raise ApiError(401, "the bearer token is invalid or expired")
        return Principal(claims["sub"], "bearer", expires_at=float(claims["exp"]))
    # The live stream is no sign of the administrator being there: it must not keep an idle session alive.
    session = await console_session(request, ctx, touch=request.url.path != EVENTS_PATH)
    if session is None:
        raise ApiError(401, "sign in first: send a bearer token or use the console")
    if request.method not in SAFE_METHODS and not tokens_match(session.csrf, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "the CSRF token is missing or wrong: reload the page", code="csrf_failed")
    return Principal(session.username, "session", session.csrf, session.ends_at.timestamp(), session.digest)


Admin = Annotated[Principal, Depends(api_principal)]


async def still_signed_in(ctx: GatewayContext, admin: Principal) -> bool:
    """For answers that last (the live stream): the session still exists and its administrator is still in the
    directory; for a bearer token, its administrator still is."""
    if admin.session is not None:
        return ctx.sessions is not None and await ctx.sessions.check(admin.session) is not None
    return await ctx.keys.knows(admin.username) is not False


async def disclosing_principal(request: Request, admin: Admin) -> Principal:
    """For the calls that answer with full keys (the export, a key's reveal): a console session must also show
    that the request comes from the console itself, by the CSRF token or the browser's `Sec-Fetch-Site:
    same-origin`, so that a link or an image on another site cannot make a signed-in browser fetch keys (and
    write an audit row in the administrator's name). Bearer calls carry no ambient credential: no check."""
    same_origin = request.headers.get("sec-fetch-site") == "same-origin"
    if admin.via == "session" and not same_origin and not tokens_match(admin.csrf, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "this request did not come from the console: reload the page", code="csrf_failed")
    return admin


Discloser = Annotated[Principal, Depends(disclosing_principal)]
