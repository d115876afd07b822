"""The use case: work one notice — fan it out to the tenant's administrators, exactly once each.

Each delivery is claimed in the ledger before its send (one delivery ahead: while the previous e-mail is
on the wire) and marked right after the SMTP server's 250, in the statement that claims the one after, on a
connection held for the whole fan-out, so that the window in which a crash would cause a second copy is
one local UPDATE. A claim left by a crash is retried after NOTICE_CLAIM_TIMEOUT.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.errors import HeaderParseError
from typing import TypeVar
from uuid import UUID

import asyncpg
from jinja2 import TemplateError
from tenacity import AsyncRetrying, before_sleep_log, stop_after_delay, wait_exponential

from services.notifier import repository
from services.notifier.context import NotifierContext
from services.notifier.keys_client import KeysUnavailable
from services.notifier.mailer import MailSession, Outcome, SendResult
from services.notifier.metrics import EMAILS_FAILED, EMAILS_SENT, SEND_LATENCY, UNRECORDED_WINDOW, threshold_label
from services.notifier.rendering import Composer, ExpiryMessage, Recipient, message_id
from services.notifier.schemas import Notice, NoticeList

log = logging.getLogger(__name__)

T = TypeVar("T")

# A notice still undelivered this long after its key expired is dropped. The reaper's `deleted` event
# normally cancels it first; until then a late notice still goes out (it says "expires today").
EXPIRED_GRACE = timedelta(hours=1)


async def work_notice(ctx: NotifierContext, row: asyncpg.Record) -> None:
    key_id, threshold = row["key_id"], row["threshold_seconds"]
    async with ctx.pool.acquire() as conn:
        if row["expires_at"] <= datetime.now(UTC) - EXPIRED_GRACE:
            await repository.cancel_key(conn, key_id, "the key expired before the notice went out", threshold)
            return
        fanout = _Fanout(ctx, conn, row)
        try:
            if row["replaced_by"] is not None and (reason := await _successor_took_over(ctx, key_id)):
                await repository.cancel_key(conn, key_id, reason, threshold)
                return
            try:
                due = await fanout.align()
            except repository.NoticeInDigest:
                return  # a digest took it after this sender leased it: the digest sends it
            if due is None:
                await repository.cancel_key(conn, key_id, "the key was deleted", threshold)
                return
            if due:
                await fanout.send(due)
        except KeysUnavailable as exc:
            log.warning("notice %s/%s waits for the keys service: %s", key_id, threshold, exc)
            await repository.reschedule_notice(conn, key_id, threshold, ctx.retry[0])
            return
        if await fanout.finish():
            log.info("notice %s/%s done", key_id, threshold_label(threshold))


async def _successor_took_over(ctx: NotifierContext, key_id: UUID) -> str | None:
    """For a rolled key's notice: why it is no longer due (its successor in use, or the key gone), or None.
    Only rolled keys' notices pay this call (one per notice): the others' keys were checked when announced."""
    standing = (await ctx.keys.standings([key_id])).get(key_id)
    if standing is None:
        return "the key expired or was deleted"
    if standing.successor_in_use_since is not None:
        return f"its successor is in use since {standing.successor_in_use_since.isoformat()}"
    return None


@dataclass(frozen=True, slots=True)
class _Accepted:
    username: str
    response: str
    accepted: float  # perf_counter() at the server's 250


class _Fanout:
    def __init__(self, ctx: NotifierContext, conn: asyncpg.Connection, row: asyncpg.Record) -> None:
        self.ctx, self.conn, self.row = ctx, conn, row
        self.key_id: UUID = row["key_id"]
        self.threshold: int = row["threshold_seconds"]
        self.label = threshold_label(self.threshold)
        self.recipients: list[Recipient] = []
        self.path: tuple[str, ...] | None = tuple(row["organization_path"]) if row["organization_path"] else None
        # The last e-mail the server accepted, until the ledger records it.
        self._sent: _Accepted | None = None

    async def align(self) -> list[str] | None:
        """Aligns the ledger with the directory at the start of the fan-out; returns the deliveries due, or
        None when the key is deleted."""
        tenant_id = self.row["tenant_id"]
        recipients = self.ctx.keys.cached_recipients(tenant_id)
        if recipients is None:
            recipients = await self.ctx.keys.recipients(tenant_id)
        return await self._align(recipients)

    async def sync(self) -> None:
        """Aligns the ledger again if the directory changed (a cached answer at most seconds old)."""
        tenant_id = self.row["tenant_id"]
        recipients = self.ctx.keys.cached_recipients(tenant_id)
        if recipients is self.recipients:
            return
        # About to wait on the keys service or the ledger: record the last accepted e-mail first.
        await self.flush_sent()
        if recipients is None:
            recipients = await self.ctx.keys.recipients(tenant_id)
            if recipients is self.recipients:
                return
        await self._align(recipients)

    async def _align(self, recipients: list[Recipient]) -> list[str] | None:
        self.recipients = recipients
        domain = self.ctx.renderer.domain
        return await repository.align_deliveries(
            self.conn,
            self.key_id,
            self.threshold,
            self.ctx.claim_timeout,
            [
                (r.username, r.email, r.display_name, message_id(self.key_id, self.threshold, r.username, domain))
                for r in recipients
            ],
        )

    async def finish(self) -> bool:
        """Closes the notice if nothing is left open, recording the last accepted e-mail in the same statement.
        True when it closed."""
        return await self._riding_sent(
            lambda sent: repository.finish_notice(
                self.conn, self.key_id, self.threshold, self.ctx.claim_timeout, sent=sent
            )
        )

    async def notice(self) -> ExpiryMessage:
        if self.path is None:
            self.path = await self.ctx.keys.organization_path(self.row["organization_id"])
            if self.path:
                await repository.set_organization_path(self.conn, self.key_id, self.threshold, list(self.path))
        r = self.row
        return ExpiryMessage(
            key_id=r["key_id"],
            key_name=r["key_name"],
            key_display=r["key_display"],
            created_by=r["created_by"],
            created_at=r["key_created_at"],
            expires_at=r["expires_at"],
            organization_id=r["organization_id"],
            organization_path=self.path or (),
            threshold_seconds=self.threshold,
            successor_id=r["replaced_by"],
        )

    async def send(self, due: list[str]) -> None:
        composer = self.ctx.renderer.composer(await self.notice())
        try:
            async with self.ctx.mailer.session() as smtp:
                await self._send_all(smtp, composer, due)
        except BaseException:
            await self.flush_sent()
            raise
        # The last accepted e-mail, if any, is recorded by finish().

    async def _send_all(self, smtp: MailSession, composer: Composer, due: list[str]) -> None:
        """Claims one delivery ahead: the claim of the next e-mail (carrying the previous one's "sent" mark)
        runs while this one is on the wire, so the ledger's round trip costs no time of its own."""
        waiting = iter(due)
        claimed = await self._claim_next(waiting)
        while claimed is not None:
            if self.ctx.stopping.is_set():
                await self._unclaim(claimed)
                return
            recipient = Recipient(claimed["recipient"], claimed["email"], claimed["display_name"])
            try:
                message = composer.message(recipient)
            except (ValueError, HeaderParseError) as exc:
                await self._mark_failed(recipient.username, f"cannot address: {exc}")
                claimed = await self._claim_next(waiting)
                continue
            except TemplateError as exc:
                log.exception("the expiry templates fail to render")
                await self._release(recipient.username, f"template error: {exc}")
                return
            try:
                await self.sync()
            except KeysUnavailable:
                await self._unclaim(claimed)  # due again as soon as the keys service answers
                raise
            ahead = asyncio.create_task(self._claim_next(waiting))
            try:
                result = await smtp.send(message, recipient.email)
            except BaseException:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)
                raise
            try:
                claimed = await ahead
            finally:
                # Whatever became of the claim ahead, the outcome of this send is recorded.
                connection_ok = await self._record(recipient, result)
            if not connection_ok:
                if claimed is not None:
                    await self._release(claimed["recipient"], "not attempted: the SMTP connection failed")
                await repository.release(
                    self.conn,
                    self.key_id,
                    self.threshold,
                    list(waiting),
                    "not attempted: the SMTP connection failed",
                    self.ctx.retry,
                )
                return

    async def _claim_next(self, waiting: Iterator[str]) -> asyncpg.Record | None:
        """Claims the first delivery of `waiting` still due to this sender; None when none is left."""
        for username in waiting:
            claimed = await self._claim(username)
            if claimed is not None:
                return claimed
        await self.flush_sent()  # nothing left to carry the last "sent" mark: record it now
        return None

    async def _claim(self, username: str) -> asyncpg.Record | None:
        """Claims one delivery, recording the previous one as sent in the same statement."""
        return await self._riding_sent(
            lambda sent: repository.claim(
                self.conn, self.key_id, self.threshold, self.ctx.claim_timeout, username, self.ctx.owner, sent=sent
            )
        )

    async def _riding_sent(self, statement: Callable[[tuple[str, str] | None], Awaitable[T]]) -> T:
        """Runs a ledger statement that also records the accepted e-mail waiting for its mark, if any: one
        commit for both. If the statement fails, the mark is written on its own first (with retries)."""
        sent = self._sent
        try:
            result = await statement((sent.username, sent.response) if sent else None)
        except Exception:
            await self.flush_sent()
            raise
        if sent:
            self._sent = None
            UNRECORDED_WINDOW.observe(time.perf_counter() - sent.accepted)
        return result

    async def _record(self, recipient: Recipient, result: SendResult) -> bool:
        """Records the outcome of a send; False when the connection is unusable."""
        username = recipient.username
        if result.outcome is Outcome.SENT:
            # Recorded with the next claim, one round trip later, or by flush_sent before anything slower.
            await self.flush_sent()  # only set here if the claim ahead failed
            self._sent = _Accepted(username, result.detail, time.perf_counter())
            SEND_LATENCY.observe(result.seconds)
            EMAILS_SENT.labels(self.label).inc()
            return True
        await self.flush_sent()
        if result.outcome is Outcome.PERMANENT:
            await self._mark_failed(username, result.detail)
            log.warning("expiry notice to %s refused for good: %s", recipient.email, result.detail)
            return True
        await self._release(username, result.detail)
        EMAILS_FAILED.labels(self.label, "transient").inc()
        log.warning("expiry notice to %s will be retried: %s", recipient.email, result.detail)
        return result.connection_ok

    async def _mark_failed(self, username: str, error: str) -> None:
        await repository.mark_failed(self.conn, self.key_id, self.threshold, username, self.ctx.owner, error)
        EMAILS_FAILED.labels(self.label, "permanent").inc()

    async def flush_sent(self) -> None:
        """Records the accepted e-mail that waits to ride on the next claim, if any."""
        sent, self._sent = self._sent, None
        if sent:
            await self._record_sent(sent.username, sent.response)
            UNRECORDED_WINDOW.observe(time.perf_counter() - sent.accepted)

    async def _record_sent(self, username: str, response: str) -> None:
        """The ledger must learn of an accepted message before the claim times out, or a copy follows:
        a database hiccup here is retried on fresh connections for up to half the claim timeout."""
        try:
            await repository.mark_sent(self.conn, self.key_id, self.threshold, username, response)
            return
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            log.warning("could not record a sent notice; retrying", exc_info=True)
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(self.ctx.claim_timeout.total_seconds() / 2),
            wait=wait_exponential(multiplier=0.1, max=5),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        ):
            with attempt:
                await repository.mark_sent(self.ctx.pool, self.key_id, self.threshold, username, response)

    async def _unclaim(self, claimed: asyncpg.Record) -> None:
        """Gives back a claim never sent on (the sender is stopping, the directory is unreachable): due again
        at once, no attempt counted."""
        await self.flush_sent()
        await repository.unclaim(self.conn, self.key_id, self.threshold, claimed["recipient"], self.ctx.owner)

    async def _release(self, username: str, error: str) -> None:
        await repository.release(
            self.conn, self.key_id, self.threshold, [username], error, self.ctx.retry, owner=self.ctx.owner
        )


async def notices_of(pool: asyncpg.Pool, key_ids: list[UUID]) -> NoticeList:
    """The expiry notices of these keys, per threshold and recipient, and what became of each."""
    rows = await repository.notices_of(pool, key_ids)
    return NoticeList(
        items=[
            Notice(
                key_id=r["key_id"],
                threshold_seconds=r["threshold_seconds"],
                threshold=threshold_label(r["threshold_seconds"]),
                recipient=r["email"],
                username=r["username"],
                display_name=r["display_name"],
                status=r["status"],
                attempts=r["attempts"],
                sent_at=r["sent_at"],
                last_error=r["last_error"],
                announced_at=r["announced_at"],
                updated_at=r["updated_at"],
            )
            for r in rows
        ]
    )
