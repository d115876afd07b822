"""`python deploy/local/mailsink.py`: a local SMTP sink that keeps what it receives and shows it.

For `make run` and demos only: SMTP on 127.0.0.1:1025, the e-mails on http://127.0.0.1:8025 (newest first,
HTML parts shown sandboxed, raw .eml downloadable, JSON at /api/messages). Nothing is stored on disk.
"""

import argparse
import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from shared.errors import NotFound

_PAGES = Environment(autoescape=True)
_LIST = _PAGES.from_string("""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="3"><title>Keyward mail sink ({{ messages|length }})</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2330}table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #e3e6eb;font-size:.9rem}th{color:#5c6470}</style>
</head><body><h1>Mail sink</h1><p>SMTP on {{ smtp }} &middot; {{ messages|length }} message(s), newest first,
refreshed every 3 s &middot;
<form method="post" action="/clear" style="display:inline"><button>Clear</button></form></p>
<table><tr><th>Received</th><th>To</th><th>Subject</th><th></th></tr>
{% for m in messages %}<tr><td>{{ m.received_at.strftime("%H:%M:%S") }}</td><td>{{ m.rcpt_tos|join(", ") }}</td>
<td><a href="/messages/{{ m.id }}">{{ m.subject }}</a></td><td><a href="/messages/{{ m.id }}.eml">.eml</a></td></tr>
{% else %}<tr><td colspan="4">Nothing yet.</td></tr>{% endfor %}</table></body></html>""")
_ONE = _PAGES.from_string("""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{{ m.subject }}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}dt{color:#5c6470}iframe{width:100%;height:70vh;border:1px solid
#e3e6eb}pre{white-space:pre-wrap;background:#f4f5f7;padding:1rem}</style></head><body><p><a href="/">&larr; all</a></p>
<dl>{% for name, value in m.headers %}<dt>{{ name }}</dt><dd>{{ value }}</dd>{% endfor %}</dl>
{% if m.html %}<iframe sandbox src="/messages/{{ m.id }}/html" title="HTML part"></iframe>{% endif %}
{% if m.text %}<h2>Plain text</h2><pre>{{ m.text }}</pre>{% endif %}</body></html>""")


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    received_at: datetime
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes

    @property
    def parsed(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=default)  # type: ignore[return-value]

    @property
    def subject(self) -> str:
        return str(self.parsed["Subject"] or "(no subject)")

    def part(self, subtype: str) -> str | None:
        body = self.parsed.get_body(preferencelist=(subtype,))
        return body.get_content() if body is not None else None  # type: ignore[attr-defined]

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat(),
            "mail_from": self.mail_from,
            "rcpt_tos": list(self.rcpt_tos),
            "subject": self.subject,
            "message_id": self.parsed["Message-ID"],
        }


class MailStore:
    """An aiosmtpd handler keeping the last `limit` messages in memory."""

    def __init__(self, limit: int = 1000) -> None:
        self.messages: deque[StoredMessage] = deque(maxlen=limit)
        self._ids = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        self.messages.appendleft(
            StoredMessage(next(self._ids), datetime.now(UTC), str(envelope.mail_from), tuple(envelope.rcpt_tos), raw)
        )
        return "250 Message accepted for delivery"

    def get(self, message_id: int) -> StoredMessage:
        for message in self.messages:
            if message.id == message_id:
                return message
        raise NotFound("message")


def create_app(store: MailStore, smtp_host: str, smtp_port: int) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(store, hostname="mailsink", loop=loop), host=smtp_host, port=smtp_port
        )
        try:
            yield
        finally:
            server.close()
            await server.wait_closed()

    app = FastAPI(title="Keyward mail sink", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return _LIST.render(messages=list(store.messages), smtp=f"{smtp_host}:{smtp_port}")

    @app.get("/api/messages")
    async def messages() -> list[dict[str, Any]]:
        return [m.summary() for m in store.messages]

    @app.post("/clear")
    async def clear() -> Response:
        store.messages.clear()
        return Response(status_code=303, headers={"Location": "/"})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/messages/{message_id}.eml")
    async def raw(message_id: int) -> Response:
        return Response(store.get(message_id).raw, media_type="message/rfc822")

    @app.get("/messages/{message_id}/html")
    async def html_part(message_id: int) -> Response:
        # The e-mail's own HTML, sandboxed: no script runs and nothing is fetched but images.
        csp = "sandbox; default-src 'none'; img-src data: https:; style-src 'unsafe-inline'"
        body = store.get(message_id).part("html") or ""
        return Response(body, media_type="text/html", headers={"Content-Security-Policy": csp})

    @app.get("/messages/{message_id}", response_class=HTMLResponse)
    async def one(message_id: int) -> str:
        m = store.get(message_id)
        view = {
            "id": m.id,
            "subject": m.subject,
            "headers": list(m.parsed.items()),
            "html": m.part("html"),
            "text": m.part("plain"),
        }
        return _ONE.render(m=view)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python deploy/local/mailsink.py", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--http-port", type=int, default=8025)
    args = parser.parse_args(argv)
    print(f"mail sink: SMTP on {args.host}:{args.smtp_port}, messages on http://{args.host}:{args.http_port}")
    app = create_app(MailStore(), args.host, args.smtp_port)
    uvicorn.run(app, host=args.host, port=args.http_port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
