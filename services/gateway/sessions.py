"""The console's sessions, held in PostgreSQL (`gateway.sessions`).

The browser's cookie carries only a random id (256 bits); the table keys each session by the id's SHA-256, so
a session ends for every copy of its cookie the moment its row is deleted (sign-out, expiry, an administrator
gone from the directory). A session ends after SESSION_IDLE_TIMEOUT unused and at SESSION_MAX_AGE at the
latest; every SESSION_RECHECK_INTERVAL its administrator is looked up in the directory again. Each session
carries a random CSRF token that the page echoes on every state-changing request.
"""

import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from services.gateway import repository
from services.gateway.config import Settings

log = logging.getLogger(__name__)

# `last_seen_at` is written once this much of the idle timeout has passed, not on every request.
TOUCH_AFTER_FRACTION = 0.1
# True: in the directory; False: not (or no longer); None: the directory could not tell (the keys service is down).
DirectoryCheck = Callable[[str], Awaitable[bool | None]]


def digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


@dataclass(frozen=True, slots=True)
class Session:
    digest: bytes
    username: str
    csrf: str
    id_token: str | None
    # When the session ends if it is not used again, or at the latest (whichever is first).
    ends_at: datetime


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, in_directory: DirectoryCheck) -> None:
        self.pool = pool
        self.in_directory = in_directory
        self.idle = settings.session_idle_timeout
        self.max_age = settings.session_max_age
        self.recheck = settings.session_recheck_interval
        self.secure = settings.secure_cookies
        # The __Host- prefix pins the cookie to this host and path, but browsers only take it over https.
        self.cookie_name = "__Host-kw_session" if self.secure else "kw_session"

    async def start(self, username: str, *, id_token: str | None = None, replacing: str | None = None) -> str:
        """A new session (and a new id: never one the browser brought along); returns the cookie's value."""
        session_id = secrets.token_urlsafe(32)
        expires_at = _now() + self.max_age
        await repository.create_session(
            self.pool,
            digest(session_id),
            username,
            secrets.token_urlsafe(32),
            id_token,
            expires_at,
            digest(replacing) if replacing else None,
        )
        return session_id

    async def find(self, session_id: str | None, *, touch: bool = True) -> Session | None:
        """The live session of this id, if any. `touch=False` for requests that do not show the administrator is
        there (the live stream): they do not keep an idle session alive."""
        if not session_id or len(session_id) > 128:
            return None
        return await self.check(digest(session_id), touch=touch)

    async def check(self, session_digest: bytes, *, touch: bool = False) -> Session | None:
        row = await repository.live_session(self.pool, session_digest, self.idle.total_seconds())
        if row is None:
            return None
        now = _now()
        checked = False
        if now - row["checked_at"] >= self.recheck:
            found = await self.in_directory(row["username"])
            if found is False:
                log.info("session of %s ended: no longer an administrator of the directory", row["username"])
                await repository.delete_session(self.pool, session_digest)
                return None
            checked = found is True
        last_seen = row["last_seen_at"]
        if touch and now - last_seen >= self.idle * TOUCH_AFTER_FRACTION:
            await repository.touch_session(self.pool, session_digest, checked=checked)
            last_seen = now
        elif checked:
            await repository.mark_checked(self.pool, session_digest)
        return Session(
            session_digest,
            row["username"],
            row["csrf_token"],
            row["id_token"],
            min(last_seen + self.idle, row["expires_at"]),
        )

    async def end(self, session_id: str | None) -> Session | None:
        """Deletes the session: every copy of its cookie stops working at once. Returns it as it was."""
        if not session_id or len(session_id) > 128:
            return None
        row = await repository.delete_session(self.pool, digest(session_id))
        if row is None:
            return None
        return Session(digest(session_id), row["username"], row["csrf_token"], row["id_token"], row["expires_at"])

    async def prune(self) -> int:
        return await repository.delete_expired(self.pool, self.idle.total_seconds())

    def cookie(self, value: str) -> str:
        """A Set-Cookie value: HttpOnly, SameSite=Lax (links from e-mails still open the console), until the
        session's maximum age (the server ends it sooner when idle)."""
        return self.cookie_header(self.cookie_name, value, int(self.max_age.total_seconds()))

    def cleared(self) -> str:
        return self.cookie_header(self.cookie_name, "", 0)

    def cookie_header(self, name: str, value: str, max_age: int) -> str:
        parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Lax", f"Max-Age={max_age}"]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)


def _now() -> datetime:
    return datetime.now(UTC)
