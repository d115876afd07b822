"""Jinja2 set-up for the pages: autoescaped templates and the filters that format dates and thresholds."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from shared.durations import format_duration

TEMPLATES = Path(__file__).parent / "templates"
NO_STORE = {"Cache-Control": "no-store"}
ROLE_NAMES = {"customer_administrator": "Customer Administrator", "administrator": "Administrator"}


def _parse(value: str | datetime) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.astimezone(UTC)


def day(value: str | datetime) -> str:
    """The expiration date as the list shows it (and as the search matches it): YYYY-MM-DD, UTC."""
    return _parse(value).strftime("%Y-%m-%d")


def when(value: str | datetime) -> str:
    return _parse(value).strftime("%Y-%m-%d %H:%M UTC")


def days_left(value: str | datetime) -> int:
    seconds = (_parse(value) - datetime.now(UTC)).total_seconds()
    return max(0, -int(-seconds // 86400))


def threshold(seconds: int | None) -> str:
    if not seconds:
        return "—"
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day{'' if days == 1 else 's'} before"
    return f"{format_duration(timedelta(seconds=seconds))} before"


def make_templates() -> Jinja2Templates:
    # Autoescaping everywhere, whatever a template's name: everything an administrator typed is data.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    templates = Jinja2Templates(env=env)
    templates.env.filters.update(day=day, when=when, days_left=days_left, threshold=threshold)
    return templates


def render(templates: Jinja2Templates, request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A page, never cached (each shows one administrator's data)."""
    values.setdefault("role_names", ROLE_NAMES)
    return templates.TemplateResponse(request, name, values, status_code=status, headers=NO_STORE)
