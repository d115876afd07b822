"""Signing in to the console and out of it, in each AUTH_MODE.

- `oidc`: /sign-in starts the authorization code flow at the OpenID provider (services/gateway/oidc.py), its
  answer comes back to /auth/callback, and a session starts for an administrator the directory knows. Sign-out
  ends the session and continues to the provider's end_session_endpoint.
- `dev` (KEYWARD_ENV=dev only): /sign-in lists the directory's administrators; choosing one starts a session.
- `jwt`: no console sign-in; /sign-in says so.
"""

import re
import secrets
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.gateway.auth import CSRF_FIELD, SIGN_IN_CSRF_COOKIE, tokens_match
from services.gateway.dependencies import Ctx, console_session
from services.gateway.oidc import SIGN_IN_SECONDS, ProviderUnavailable, SignInRefused
from services.gateway.views import render
from shared.errors import ApiError

router = APIRouter(include_in_schema=False)
CALLBACK_PATH = "/auth/callback"
SIGNED_OUT_PATH = "/signed-out"
HOME = "/keys"
# An OAuth error code as RFC 6749 spells them; anything else the provider (or someone else) sent is not shown.
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")


def safe_next(path: str | None) -> str:
    """The page to return to after signing in: a path on this origin, else the API Key page."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return HOME
    # Browsers drop tabs and newlines from URLs ("/\t/evil.example" is "//evil.example" to them).
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        return HOME
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or parts.path.startswith(("/sign-in", "/sign-out", "/auth/")):
        return HOME
    return path


def _base_url(request: Request, ctx: Ctx) -> str:
    return (ctx.settings.console_url or str(request.base_url)).rstrip("/")


async def _form(request: Request) -> dict[str, str]:
    """The fields of a url-encoded form post (the sign-in and sign-out forms; no multipart here)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise ApiError(415, "send the form as application/x-www-form-urlencoded")
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    return {name: values[0] for name, values in fields.items()}


@router.get("/sign-in")
async def sign_in_page(request: Request, ctx: Ctx, next: str | None = None, account: str | None = None) -> Response:
    """`account=choose` asks the provider to sign in afresh (as someone else), whatever session it has."""
    target = safe_next(next)
    if ctx.settings.auth_mode == "oidc":
        if account != "choose" and await console_session(request, ctx) is not None:
            return RedirectResponse(target, status_code=303)
        return await _start(request, ctx, target, prompt="login" if account == "choose" else None)
    if ctx.settings.auth_mode != "dev":
        return render(ctx.templates, request, "sign_in.html", admins=None, csrf=None, next=target)
    admins = await ctx.keys.json("GET", "/v1/directory/administrators", None)
    admins.sort(key=lambda a: (a["level"] != "system", a["username"]))
    csrf = secrets.token_urlsafe(24)
    response = render(ctx.templates, request, "sign_in.html", admins=admins, csrf=csrf, next=target)
    response.set_cookie(
        SIGN_IN_CSRF_COOKIE,
        csrf,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=ctx.settings.secure_cookies,
        path="/sign-in",
    )
    return response


async def _start(request: Request, ctx: Ctx, target: str, prompt: str | None) -> Response:
    assert ctx.oidc is not None and ctx.sessions is not None
    try:
        sign_in_id, url = await ctx.oidc.begin(f"{_base_url(request, ctx)}{CALLBACK_PATH}", target, prompt=prompt)
    except ProviderUnavailable as exc:
        return _refused(request, ctx, str(exc), 503)
    response = RedirectResponse(url, status_code=303)
    response.headers.append("Set-Cookie", ctx.sessions.cookie_header(ctx.oidc.cookie_name, sign_in_id, SIGN_IN_SECONDS))
    return response


@router.get(CALLBACK_PATH)
async def callback(
    request: Request,
    ctx: Ctx,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    iss: str | None = None,
) -> Response:
    """The provider's answer: a session for an administrator of the directory, else a page saying why not."""
    if ctx.oidc is None or ctx.sessions is None:
        raise ApiError(404, "not found")
    # Taken (and so removed) whatever follows: an answer is good for one try.
    sign_in = await ctx.oidc.take(request.cookies.get(ctx.oidc.cookie_name))
    response: Response
    try:
        if sign_in is None or not sign_in.live:
            raise SignInRefused("this sign-in was not started in this browser, was used already, or has expired")
        if not tokens_match(sign_in.state, state):
            raise SignInRefused("the provider's answer does not belong to this sign-in (its state differs)")
        if iss is not None and iss.rstrip("/") != ctx.oidc.issuer:
            raise SignInRefused("the answer comes from another issuer")
        if error is not None:
            shown = error if _ERROR_CODE.fullmatch(error) else "error"
            raise SignInRefused(f"the provider did not sign you in ({shown})")
        if not code:
            raise SignInRefused("the provider sent no authorization code")
        identity = await ctx.oidc.finish(sign_in, code)
        known = await ctx.keys.knows(identity.username)
    except SignInRefused as exc:
        response = _refused(request, ctx, str(exc), 400)
    except ProviderUnavailable as exc:
        response = _refused(request, ctx, str(exc), 503)
    else:
        previous = request.cookies.get(ctx.sessions.cookie_name)
        if known is None:
            response = _refused(request, ctx, "the directory of administrators is unavailable", 503)
        elif not known:
            # Whoever this browser was signed in as before, it is someone else now: that session ends too.
            await ctx.sessions.end(previous)
            response = render(ctx.templates, request, "not_admin.html", 403, username=identity.username)
            response.headers.append("Set-Cookie", ctx.sessions.cleared())
        else:
            session_id = await ctx.sessions.start(identity.username, id_token=identity.id_token, replacing=previous)
            assert sign_in is not None
            response = RedirectResponse(sign_in.next_path, status_code=303)
            response.headers.append("Set-Cookie", ctx.sessions.cookie(session_id))
    response.headers.append("Set-Cookie", ctx.sessions.cookie_header(ctx.oidc.cookie_name, "", 0))
    return response


def _refused(request: Request, ctx: Ctx, reason: str, status: int) -> HTMLResponse:
    return render(ctx.templates, request, "sign_in_refused.html", status, reason=reason)


@router.post("/sign-in")
async def dev_sign_in(request: Request, ctx: Ctx) -> RedirectResponse:
    """Development sign-in: choose an administrator of the directory."""
    if ctx.settings.auth_mode != "dev" or ctx.sessions is None:
        raise ApiError(404, "not found")
    form = await _form(request)
    if not tokens_match(request.cookies.get(SIGN_IN_CSRF_COOKIE), form.get(CSRF_FIELD)):
        raise ApiError(403, "the sign-in form expired: reload the page", code="csrf_failed")
    username = form.get("username", "")
    admins = await ctx.keys.json("GET", "/v1/directory/administrators", None)
    if username not in {a["username"] for a in admins}:
        raise ApiError(422, "no such administrator", fields={"username": "not in the directory"})
    session_id = await ctx.sessions.start(username, replacing=request.cookies.get(ctx.sessions.cookie_name))
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    response.headers.append("Set-Cookie", ctx.sessions.cookie(session_id))
    response.delete_cookie(SIGN_IN_CSRF_COOKIE, path="/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, ctx: Ctx) -> RedirectResponse:
    """Ends the session (every copy of its cookie with it), then signs out at the provider where there is one."""
    target = "/sign-in" if ctx.settings.auth_mode == "dev" else SIGNED_OUT_PATH
    if ctx.sessions is None:
        return RedirectResponse(target, status_code=303)
    session_id = request.cookies.get(ctx.sessions.cookie_name)
    session = await console_session(request, ctx, touch=False)
    if session is not None and not tokens_match(session.csrf, (await _form(request)).get(CSRF_FIELD)):
        raise ApiError(403, "the CSRF token is missing or wrong: reload the page", code="csrf_failed")
    ended = await ctx.sessions.end(session_id) if session is not None else None
    if ctx.oidc is not None and ended is not None:
        post_logout = f"{_base_url(request, ctx)}{SIGNED_OUT_PATH}"
        target = await ctx.oidc.logout_url(ended.id_token, post_logout) or target
    response = RedirectResponse(target, status_code=303)
    response.headers.append("Set-Cookie", ctx.sessions.cleared())
    return response


@router.get(SIGNED_OUT_PATH)
async def signed_out(request: Request, ctx: Ctx) -> HTMLResponse:
    return render(ctx.templates, request, "signed_out.html")
