"""The console's pages, rendered on the server (Jinja2, autoescaped); plain JavaScript adds the live parts."""

import asyncio
import secrets
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from services.gateway.auth import CSRF_FIELD, SIGN_IN_CSRF_COOKIE, Session, tokens_match
from services.gateway.dependencies import Ctx, remember_cookie
from services.gateway.schemas import flatten, organization_tree
from shared.errors import ApiError

router = APIRouter(include_in_schema=False)
NO_STORE = {"Cache-Control": "no-store"}
ROLE_NAMES = {"customer_administrator": "Customer Administrator", "administrator": "Administrator"}


class SignInRequired(Exception):
    """Raised by pages without a valid session; the app answers with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def _session(request: Request, ctx: Ctx) -> Session:
    session = None
    if ctx.settings.auth_mode == "dev":
        session = ctx.sessions.read(request.cookies.get(ctx.sessions.cookie_name))
    if session is None:
        raise SignInRequired(request.url.path)
    renewed = ctx.sessions.renewed(session)
    if renewed:
        remember_cookie(request, ctx.sessions.cookie(renewed))
    return session


def _render(ctx: Ctx, request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("role_names", ROLE_NAMES)
    return ctx.templates.TemplateResponse(request, name, values, status_code=status, headers=NO_STORE)


async def _me(ctx: Ctx, request: Request, session: Session) -> dict[str, Any]:
    try:
        return await ctx.keys.json("GET", "/v1/me", session.username)
    except ApiError as exc:
        if exc.status == 401:  # no longer in the directory
            raise SignInRequired(request.url.path) from None
        raise


def _safe_next(path: str | None) -> str:
    return path if path and path.startswith("/") and not path.startswith(("//", "/\\")) else "/keys"


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/keys", status_code=303)


@router.get("/sign-in")
async def sign_in_page(request: Request, ctx: Ctx, next: str | None = None) -> HTMLResponse:
    if ctx.settings.auth_mode != "dev":
        return _render(ctx, request, "sign_in.html", admins=None, csrf=None, next=_safe_next(next))
    admins = await ctx.keys.json("GET", "/v1/directory/administrators", None)
    admins.sort(key=lambda a: (a["level"] != "system", a["username"]))
    csrf = secrets.token_urlsafe(24)
    response = _render(ctx, request, "sign_in.html", admins=admins, csrf=csrf, next=_safe_next(next))
    response.set_cookie(
        SIGN_IN_CSRF_COOKIE,
        csrf,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=ctx.sessions.secure,
        path="/sign-in",
    )
    return response


async def _form(request: Request) -> dict[str, str]:
    """The fields of a url-encoded form post (the sign-in and sign-out forms; no multipart here)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise ApiError(415, "send the form as application/x-www-form-urlencoded")
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    return {name: values[0] for name, values in fields.items()}


@router.post("/sign-in")
async def sign_in(request: Request, ctx: Ctx) -> RedirectResponse:
    """Development sign-in: choose an administrator of the directory."""
    if ctx.settings.auth_mode != "dev":
        raise ApiError(404, "not found")
    form = await _form(request)
    if not tokens_match(request.cookies.get(SIGN_IN_CSRF_COOKIE), form.get(CSRF_FIELD)):
        raise ApiError(403, "the sign-in form expired: reload the page", code="csrf_failed")
    username = form.get("username", "")
    admins = await ctx.keys.json("GET", "/v1/directory/administrators", None)
    if username not in {a["username"] for a in admins}:
        raise ApiError(422, "no such administrator", fields={"username": "not in the directory"})
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    response.headers.append("Set-Cookie", ctx.sessions.cookie(ctx.sessions.issue(username)))
    response.delete_cookie(SIGN_IN_CSRF_COOKIE, path="/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, ctx: Ctx) -> RedirectResponse:
    session = ctx.sessions.read(request.cookies.get(ctx.sessions.cookie_name))
    if session is not None and not tokens_match(session.csrf, (await _form(request)).get(CSRF_FIELD)):
        raise ApiError(403, "the CSRF token is missing or wrong: reload the page", code="csrf_failed")
    response = RedirectResponse("/sign-in", status_code=303)
    response.headers.append("Set-Cookie", ctx.sessions.cleared())
    return response


@router.get("/keys")
async def keys_page(request: Request, ctx: Ctx) -> HTMLResponse:
    session = _session(request, ctx)
    me = await _me(ctx, request, session)
    if me["role"] != "customer_administrator":
        return _render(ctx, request, "not_allowed.html", 403, me=me, csrf=session.csrf)
    tree = organization_tree(await ctx.keys.json("GET", "/v1/organizations", session.username))
    return _render(ctx, request, "keys.html", me=me, csrf=session.csrf, organizations=flatten(tree))


@router.get("/keys/{key_id}")
async def edit_page(key_id: str, request: Request, ctx: Ctx) -> HTMLResponse:
    session = _session(request, ctx)
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
