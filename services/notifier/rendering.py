"""The expiry e-mail: Jinja2 templates (HTML with a plain-text alternative) from one folder, easy to brand.

Everything a user typed reaches the templates as one line without control characters; the HTML templates
autoescape it, and the subject is cleaned again after rendering, so no name can add a header or a tag.
"""

import functools
import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.header import Header
from email.headerregistry import Address
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import SMTP, compat32
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Any
from uuid import UUID

from jinja2 import Environment, FileSystemLoader, StrictUndefined, meta, select_autoescape

from services.notifier.metrics import threshold_label

TEMPLATES = Path(__file__).resolve().parent / "templates"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
_MESSAGE_ID_NAMESPACE = uuid.UUID("6f1c7e2a-4b1d-5c7e-9a63-1b0f2d6c8e41")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


_TEMPLATES = ("expiring.subject.txt", "expiring.txt", "expiring.html")

# Bodies in quoted-printable UTF-8: mostly-ASCII text stays readable on the wire, and no line is too long.
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
_WIRE = compat32.clone(linesep="\r\n")


def _header(name: str, value: str) -> str:
    """A header value as is when ASCII, otherwise RFC 2047-encoded in UTF-8 (folded to 78 characters)."""
    return value if value.isascii() else Header(value, "utf-8", header_name=name).encode()


def _text(body: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    part.set_payload(body, _UTF8_QP)
    return part


def _uses(env: Environment, name: str, variable: str, seen: set[str] | None = None) -> bool:
    """Whether a template, or one it extends or includes, reads `variable` (a dynamic include: assume so)."""
    seen = seen if seen is not None else set()
    if name in seen:
        return False
    seen.add(name)
    source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    tree = env.parse(source)
    if variable in meta.find_undeclared_variables(tree):
        return True
    return any(other is None or _uses(env, other, variable, seen) for other in meta.find_referenced_templates(tree))


def one_line(text: str, limit: int = 200) -> str:
    """Control characters (CR, LF, NUL...) become spaces, runs of spaces one; long text is cut with an ellipsis."""
    cleaned = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1].rstrip() + "…"


def message_id(key_id: UUID, threshold_seconds: int, recipient: str, domain: str) -> str:
    """The same Message-ID for every attempt at one (key, threshold, recipient): a second copy is recognisable."""
    digest = uuid.uuid5(_MESSAGE_ID_NAMESPACE, f"{key_id}/{threshold_seconds}/{recipient}")
    return f"<expiry.{digest.hex}@{domain}>"


def digest_message_id(digest_id: UUID, recipient: str, domain: str) -> str:
    """The same Message-ID for every attempt at one digest to one recipient (a copy resent after a crash)."""
    digest = uuid.uuid5(_MESSAGE_ID_NAMESPACE, f"digest/{digest_id}/{recipient}")
    return f"<digest.{digest.hex}@{domain}>"


@functools.lru_cache(maxsize=4096)
def to_header(email: str, display_name: str) -> bytes:
    """The To header of one administrator, remembered: the same people get every notice of their tenant.

    Address validates the address (no CR, LF or second address can ride in it); formataddr writes the
    header, encoding a non-ASCII name (RFC 2047) far more cheaply than the header registry."""
    to = Address(addr_spec=email).addr_spec
    return SMTP.fold_binary("To", formataddr((one_line(display_name, 100), to), charset="utf-8"))


def clear_date(moment: datetime) -> str:
    """'Tuesday, 14 July 2026 at 09:30 UTC' whatever the process's locale."""
    at = moment.astimezone(UTC)
    return f"{_DAYS[at.weekday()]}, {at.day} {_MONTHS[at.month - 1]} {at.year} at {at:%H:%M} UTC"


def days_left(expires_at: datetime, now: datetime) -> int:
    return max(0, math.ceil((expires_at - now).total_seconds() / 86400))


def in_words(days: int) -> str:
    if days <= 0:
        return "today"
    return "in 1 day" if days == 1 else f"in {days} days"


@dataclass(frozen=True, slots=True)
class ExpiryMessage:
    """What one expiry e-mail tells, whoever receives it."""

    key_id: UUID
    key_name: str
    key_display: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    organization_id: UUID
    # Organization names from the tenant down to the key's organization; empty when unknown.
    organization_path: tuple[str, ...]
    threshold_seconds: int
    # The key that replaces this one (rolled, not in use yet: these reminders stop once it is).
    successor_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    username: str
    email: str
    display_name: str


def soonest_first(notices: Sequence[ExpiryMessage]) -> list[ExpiryMessage]:
    return sorted(notices, key=lambda n: (n.expires_at, n.key_name))


def notices_header(notices: Sequence[ExpiryMessage]) -> str:
    """X-Keyward-Notices: each notice a digest carries, `key_id/threshold_seconds`, comma-separated in the body's
    order, so that a filter (or the chaos run's sink) can tell which notices arrived. Folded at the commas when
    written (a full digest's 500 are some 23,000 characters: lines of at most 78)."""
    return ", ".join(f"{n.key_id}/{n.threshold_seconds}" for n in soonest_first(notices))


class Renderer:
    def __init__(self, *, console_url: str, sender: str, override_dir: Path | None = None) -> None:
        # An override folder shadows the built-in templates file by file (brand.json alone rebrands).
        folders = [str(override_dir)] if override_dir else []
        self.env = Environment(
            loader=FileSystemLoader([*folders, str(TEMPLATES)]),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        brand_source, _, _ = self.env.loader.get_source(self.env, "brand.json")  # type: ignore[union-attr]
        self.env.globals["brand"] = json.loads(brand_source)
        self.console_url = console_url.rstrip("/")
        self.sender = sender
        name, address = parseaddr(sender)
        self.domain = Address(addr_spec=address).domain
        self._from = formataddr((name, address), charset="utf-8")
        self.personal = any(_uses(self.env, name, "recipient") for name in _TEMPLATES)

    def context(self, notice: ExpiryMessage, recipient: Recipient, now: datetime) -> dict[str, Any]:
        path = [one_line(name, 100) for name in notice.organization_path]
        days = days_left(notice.expires_at, now)
        return {
            "recipient": {"name": one_line(recipient.display_name, 100), "email": recipient.email},
            "key": {
                "id": str(notice.key_id),
                "name": one_line(notice.key_name, 100),
                "display": one_line(notice.key_display, 100),
                "created_by": one_line(notice.created_by, 100),
                "created_at": clear_date(notice.created_at),
            },
            "organization": {"name": path[-1] if path else None, "path": path, "path_text": " / ".join(path)},
            "expiry": {
                "date": clear_date(notice.expires_at),
                "iso": notice.expires_at.astimezone(UTC).isoformat(timespec="seconds"),
                "days_left": days,
                "in_words": in_words(days),
                "threshold": threshold_label(notice.threshold_seconds),
            },
            "successor": (
                {"id": str(notice.successor_id), "link": f"{self.console_url}/keys/{notice.successor_id}"}
                if notice.successor_id
                else None
            ),
            "links": {
                "key": f"{self.console_url}/keys/{notice.key_id}",
                # The console opens its Roll Key dialog for this key (after sign-in). `replace` is the name
                # templates written before the roll knew.
                "roll": f"{self.console_url}/keys/{notice.key_id}?roll",
                "replace": f"{self.console_url}/keys/{notice.key_id}?roll",
                "console": self.console_url,
            },
        }

    def composer(self, notice: ExpiryMessage, now: datetime | None = None) -> "Composer":
        return Composer(self, notice, now or datetime.now(UTC))

    def base_message(self, notice: ExpiryMessage, rendered: "Rendered", now: datetime) -> bytes:
        """The e-mail without its two per-recipient headers (To, Message-ID), as the SMTP server receives it."""
        return self._mime(
            rendered,
            now,
            {"X-Keyward-Key-Id": str(notice.key_id), "X-Keyward-Threshold-Seconds": str(notice.threshold_seconds)},
        )

    def _mime(self, rendered: "Rendered", now: datetime, headers: dict[str, str]) -> bytes:
        """Built with the email package's MIME classes on the compat32 policy: three times quicker than
        EmailMessage, whose header registry parses every header it is given back again."""
        message = MIMEMultipart("alternative")
        message["Subject"] = _header("Subject", rendered.subject)
        message["From"] = self._from
        message["Date"] = format_datetime(now)
        # RFC 3834: no out-of-office replies to a robot.
        message["Auto-Submitted"] = "auto-generated"
        for name, value in headers.items():
            message[name] = value
        message.attach(_text(rendered.text, "plain"))
        message.attach(_text(rendered.html, "html"))
        return message.as_bytes(policy=_WIRE)

    def digest_context(self, notices: Sequence[ExpiryMessage], recipient: Recipient, now: datetime) -> dict[str, Any]:
        """One entry per notice as the single e-mail tells it (key, organization, expiry, successor, links),
        the soonest expiry first."""
        entries = [self.context(n, recipient, now) for n in soonest_first(notices)]
        tenants = {tuple(e["organization"]["path"][:1]) for e in entries}
        return {
            "recipient": entries[0]["recipient"],
            "keys": [{k: v for k, v in e.items() if k != "recipient"} for e in entries],
            "count": len(entries),
            "tenant": next(iter(tenants))[0] if len(tenants) == 1 and () not in tenants else None,
            "links": {"console": self.console_url},
        }

    def digest(
        self, digest_id: UUID, notices: Sequence[ExpiryMessage], recipient: Recipient, now: datetime | None = None
    ) -> bytes:
        """The digest e-mail of `notices` to one recipient, with its To and Message-ID. Raises ValueError or
        HeaderParseError for an address that cannot be written in a To header."""
        now = now or datetime.now(UTC)
        values = self.digest_context(notices, recipient, now)
        rendered = Rendered(
            subject=one_line(self.env.get_template("digest.subject.txt").render(values), 250),
            text=self.env.get_template("digest.txt").render(values),
            html=self.env.get_template("digest.html").render(values),
        )
        headers = {
            "X-Keyward-Digest-Id": str(digest_id),
            "X-Keyward-Digest-Size": str(len(notices)),
            "X-Keyward-Notices": notices_header(notices),
        }
        body = self._mime(rendered, now, headers)
        mid = digest_message_id(digest_id, recipient.username, self.domain)
        return to_header(recipient.email, recipient.display_name) + b"Message-ID: " + mid.encode() + b"\r\n" + body


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


class Composer:
    """The e-mails of one fan-out, built and encoded as MIME once, each recipient getting their own To and
    Message-ID in front of it.

    Building and encoding the MIME structure costs much more than rendering the templates, and the stock
    templates say the same to every administrator. A brand whose templates do address each recipient
    (`recipient.name`) still works: they are rendered for every recipient, and a message is rebuilt
    whenever its rendering differs from the previous one.
    """

    def __init__(self, renderer: Renderer, notice: ExpiryMessage, now: datetime) -> None:
        self.renderer, self.notice, self.now = renderer, notice, now
        self._rendered: Rendered | None = None
        self._base = b""

    def message(self, recipient: Recipient) -> bytes:
        """Raises ValueError or HeaderParseError for an address that cannot be written in a To header."""
        if self._rendered is None or self.renderer.personal:
            self._build(recipient)
        mid = message_id(self.notice.key_id, self.notice.threshold_seconds, recipient.username, self.renderer.domain)
        return (
            to_header(recipient.email, recipient.display_name) + b"Message-ID: " + mid.encode() + b"\r\n" + self._base
        )

    def _build(self, recipient: Recipient) -> None:
        env, values = self.renderer.env, self.renderer.context(self.notice, recipient, self.now)
        rendered = Rendered(
            subject=one_line(env.get_template("expiring.subject.txt").render(values), 250),
            text=env.get_template("expiring.txt").render(values),
            html=env.get_template("expiring.html").render(values),
        )
        if rendered != self._rendered:
            self._base = self.renderer.base_message(self.notice, rendered, self.now)
            self._rendered = rendered
