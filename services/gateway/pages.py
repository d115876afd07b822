"""The console's pages, rendered on the server (Jinja2, autoescaped); plain JavaScript adds the live parts.
Signing in and out: services/gateway/sign_in.py."""

import asyncio
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from services.gateway.dependencies import Ctx, console_session
from services.gateway.schemas import flatten, organization_tree
from services.gateway.sessions import Session
from services.gateway.views import render
from shared.errors import ApiError

router = APIRouter(include_in_schema=False)


class SignInRequired(Exception):
    """Raised by pages without a valid session; the app answers with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def _here(request: Request) -> str:
    """The page asked for, query included (the expiry e-mail's `/keys/{id}?roll` opens the roll after sign-in)."""
    return f"{request.url.path}?{request.url.query}" if request.url.query else request.url.path


async def _session(request: Request, ctx: Ctx) -> Session:
    session = await console_session(request, ctx)
    if session is None:
        raise SignInRequired(_here(request))
    return session


def _render(ctx: Ctx, request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    return render(ctx.templates, request, name, status, **values)


async def _me(ctx: Ctx, request: Request, session: Session) -> dict[str, Any]:
    try:
        return await ctx.keys.json("GET", "/v1/me", session.username)
    except ApiError as exc:
        if exc.status == 401:  # no longer in the directory
            raise SignInRequired(_here(request)) from None
        raise


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/keys", status_code=303)


@router.get("/keys")
async def keys_page(request: Request, ctx: Ctx) -> HTMLResponse:
    session = await _session(request, ctx)
    me = await _me(ctx, request, session)
    if me["role"] != "customer_administrator":
        return _render(ctx, request, "not_allowed.html", 403, me=me, csrf=session.csrf)
    tree = organization_tree(await ctx.keys.json("GET", "/v1/organizations", session.username))
    return _render(ctx, request, "keys.html", me=me, csrf=session.csrf, organizations=flatten(tree))


@router.get("/keys/{key_id}")
async def edit_page(key_id: str, request: Request, ctx: Ctx) -> HTMLResponse:
    session = await _session(request, ctx)
    me = await _me(ctx, request, session)
    if me["role"] != "customer_administrator":
        return _render(ctx, request, "not_allowed.html", 403, me=me, csrf=session.csrf)
    try:
        parsed = UUID(key_id)
        key, notices = await asyncio.gather(
            ctx.keys.json("GET", f"/v1/keys/{parsed}", session.username), ctx.notifier.notices(parsed)
        )
    except (ValueError, ApiError) as exc:
        if isinstance(exc, ApiError) and exc.status != 404:
            raise
        return _render(ctx, request, "not_found.html", 404, me=me, csrf=session.csrf)
    return _render(ctx, request, "key_edit.html", me=me, csrf=session.csrf, key=key, notices=notices)


@router.get("/help")
async def help_index(request: Request, ctx: Ctx) -> HTMLResponse:
    return _render(ctx, request, "help.html")


@router.get("/help/api-keys")
async def help_api_keys(request: Request, ctx: Ctx) -> HTMLResponse:
    return _render(ctx, request, "help_api_keys.html")
