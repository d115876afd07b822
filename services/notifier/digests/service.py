"""Digests (issue 21): an administrator who would get more than NOTICE_DIGEST_MIN expiry notices falling due
within NOTICE_DIGEST_WINDOW gets one e-mail listing them all, the soonest expiry first.

A notice falls due when the keys service announces its threshold (`announced_at`). A tenant's administrators
all get the same notices, so a digest is formed per tenant, in the consumer's transaction that records the
notices (`form_digests`), from the tenant's notices that no sender has touched yet: a notice either goes out
in a digest or on its own, never both. The sender then works a digest as one unit, on the ledger of single
notices: one delivery per (key, threshold, recipient), carrying the digest's id; a recipient's deliveries of
a digest are claimed in one statement, the e-mail sent (its Message-ID derived from the digest and the
recipient), and all of them marked sent in one statement after the server's 250. A crash between the two
leaves them claimed: after NOTICE_CLAIM_TIMEOUT the digest is sent again as a whole, with the same Message-ID.
"""

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.errors import HeaderParseError
from itertools import groupby
from uuid import UUID

import asyncpg
from jinja2 import TemplateError
from tenacity import AsyncRetrying, before_sleep_log, stop_after_delay, wait_exponential

from services.notifier import repository
from services.notifier.context import NotifierContext
from services.notifier.digests import repository as digests
from services.notifier.keys_client import KeysUnavailable
from services.notifier.mailer import MailSession, Outcome
from services.notifier.metrics import (
    DIGEST_LABEL,
    DIGEST_NOTICES,
    DIGESTS_FORMED,
    DIGESTS_SENT,
    EMAILS_FAILED,
    EMAILS_SENT,
    SEND_LATENCY,
    UNRECORDED_WINDOW,
)
from services.notifier.rendering import ExpiryMessage, Recipient, message_id
from services.notifier.service import EXPIRED_GRACE

log = logging.getLogger(__name__)

# Notices in one digest at most: a tenant whose thousands of keys expire together gets a digest per this many
# (an e-mail listing ten thousand keys is too large to read, or to be accepted).
MAX_ENTRIES = 500


@dataclass(frozen=True, slots=True)
class DigestRule:
    """More than `minimum` notices falling due within `window` of each other: a digest."""

    window: timedelta
    minimum: int
    maximum: int = MAX_ENTRIES


def digest_groups(due: Sequence[datetime], rule: DigestRule) -> list[range]:
    """The digests among one administrator's notices, given when each fell due (sorted): runs of more than
    `rule.minimum` notices that fell due within `rule.window` of the run's first (at most `rule.maximum` each).
    The notices in no run stay single notices."""
    groups: list[range] = []
    first = 0
    while first < len(due):
        end = first
        while end < len(due) and end - first < rule.maximum and due[end] - due[first] <= rule.window:
            end += 1
        if end - first > rule.minimum:
            groups.append(range(first, end))
            first = end
        else:
            first += 1
    return groups


async def form_digests(conn: asyncpg.Connection, tenant_ids: Sequence[UUID], rule: DigestRule) -> int:
    """Forms the digests of these tenants' untouched notices, in the caller's transaction; -> how many."""
    candidates = await digests.undigested_notices(conn, tenant_ids)
    formed: list[tuple[UUID, UUID]] = []
    members: list[tuple[UUID, int, UUID]] = []
    for tenant_id, rows in groupby(candidates, key=lambda r: r["tenant_id"]):
        notices = list(rows)
        for group in digest_groups([n["announced_at"] for n in notices], rule):
            digest_id = uuid.uuid4()
            formed.append((digest_id, tenant_id))
            members.extend((notices[i]["key_id"], notices[i]["threshold_seconds"], digest_id) for i in group)
    if formed:
        await digests.create_digests(conn, formed, members)
        DIGESTS_FORMED.inc(len(formed))
    return len(formed)


async def work_digest(ctx: NotifierContext, row: asyncpg.Record) -> None:
    digest_id = row["digest_id"]
    async with ctx.pool.acquire() as conn:
        try:
            notices = await _live_notices(ctx, conn, digest_id)
            if notices:
                send = _Send(ctx, conn, row, notices)
                due = await send.sync()
                if due:
                    await send.all(due)
        except KeysUnavailable as exc:
            log.warning("digest %s waits for the keys service: %s", digest_id, exc)
            await digests.reschedule_digest(conn, digest_id, ctx.retry[0])
            return
        if await digests.finish_digest(conn, digest_id, ctx.claim_timeout):
            log.info("digest %s done", digest_id)


async def _live_notices(ctx: NotifierContext, conn: asyncpg.Connection, digest_id: UUID) -> list[ExpiryMessage]:
    """The digest's open notices still due, as the e-mail tells them; cancels the others (the key long expired,
    or rolled and its successor in use), as a single notice's sender does."""
    rows = await digests.digest_notices(conn, digest_id)
    too_late = datetime.now(UTC) - EXPIRED_GRACE
    for r in rows:
        if r["expires_at"] <= too_late:
            await repository.cancel_key(
                conn, r["key_id"], "the key expired before the notice went out", r["threshold_seconds"]
            )
    rows = [r for r in rows if r["expires_at"] > too_late]
    rolled = [r["key_id"] for r in rows if r["replaced_by"] is not None]
    if rolled:
        standings = await ctx.keys.standings(rolled)
        gone: dict[UUID, str] = {}
        for key_id in rolled:
            standing = standings.get(key_id)
            if standing is None:
                gone[key_id] = "the key expired or was deleted"
            elif standing.successor_in_use_since is not None:
                gone[key_id] = f"its successor is in use since {standing.successor_in_use_since.isoformat()}"
        for r in rows:
            if r["key_id"] in gone:
                await repository.cancel_key(conn, r["key_id"], gone[r["key_id"]], r["threshold_seconds"])
        rows = [r for r in rows if r["key_id"] not in gone]
    return [await _message(ctx, conn, r) for r in rows]


async def _message(ctx: NotifierContext, conn: asyncpg.Connection, r: asyncpg.Record) -> ExpiryMessage:
    path = tuple(r["organization_path"] or ())
    if not path:
        path = await ctx.keys.organization_path(r["organization_id"])
        if path:
            await repository.set_organization_path(conn, r["key_id"], r["threshold_seconds"], list(path))
    return ExpiryMessage(
        key_id=r["key_id"],
        key_name=r["key_name"],
        key_display=r["key_display"],
        created_by=r["created_by"],
        created_at=r["key_created_at"],
        expires_at=r["expires_at"],
        organization_id=r["organization_id"],
        organization_path=path or (),
        threshold_seconds=r["threshold_seconds"],
        successor_id=r["replaced_by"],
    )


async def _align(
    ctx: NotifierContext,
    conn: asyncpg.Connection,
    digest_id: UUID,
    notices: list[ExpiryMessage],
    recipients: list[Recipient],
) -> list[str]:
    """Aligns each notice's deliveries with the directory, as a single notice's fan-out does, all with the same
    list of administrators; -> the recipients with a delivery due. A deleted key's notice is cancelled and
    leaves the list."""
    domain = ctx.renderer.domain
    due: set[str] = set()
    for notice in list(notices):
        key_id, threshold = notice.key_id, notice.threshold_seconds
        listed = [
            (r.username, r.email, r.display_name, message_id(key_id, threshold, r.username, domain)) for r in recipients
        ]
        now_due = await repository.align_deliveries(conn, key_id, threshold, ctx.claim_timeout, listed, digest_id)
        if now_due is None:
            await repository.cancel_key(conn, key_id, "the key was deleted", threshold)
            notices.remove(notice)
        else:
            due.update(now_due)
    return sorted(due)


class _Send:
    """Sends a digest to each recipient due, on one SMTP session: claim all of the recipient's deliveries of
    the digest, send, mark them all sent."""

    def __init__(
        self, ctx: NotifierContext, conn: asyncpg.Connection, row: asyncpg.Record, notices: list[ExpiryMessage]
    ) -> None:
        self.ctx, self.conn = ctx, conn
        self.digest_id: UUID = row["digest_id"]
        self.tenant_id: UUID = row["tenant_id"]
        self.live = notices
        self.notices = {(n.key_id, n.threshold_seconds): n for n in notices}
        self.recipients: list[Recipient] | None = None

    async def sync(self) -> list[str]:
        """Aligns the deliveries with the directory when its answer changed (a cached one at most
        RECIPIENTS_CACHE_TTL old), as a single notice's fan-out does before each e-mail; -> the recipients due."""
        recipients = self.ctx.keys.cached_recipients(self.tenant_id)
        if recipients is None:
            recipients = await self.ctx.keys.recipients(self.tenant_id)
        if recipients is self.recipients:
            return [r.username for r in recipients]
        self.recipients = recipients
        return await _align(self.ctx, self.conn, self.digest_id, self.live, recipients)

    async def all(self, due: list[str]) -> None:
        async with self.ctx.mailer.session() as smtp:
            for index, username in enumerate(due):
                if self.ctx.stopping.is_set():
                    return
                # No longer an administrator: their deliveries were cancelled; a new one waits for the next pass.
                if username not in await self.sync():
                    continue
                if not await self.one(smtp, username):
                    await digests.release_digest(
                        self.conn,
                        self.digest_id,
                        due[index + 1 :],
                        "not attempted: the SMTP connection failed",
                        self.ctx.retry,
                    )
                    return

    async def one(self, smtp: MailSession, username: str) -> bool:
        """Sends the digest to one recipient if their deliveries are due; False when the connection is unusable."""
        ctx, digest_id = self.ctx, self.digest_id
        claimed = await digests.claim_digest(self.conn, digest_id, username, ctx.claim_timeout, ctx.owner)
        if not claimed:
            return True
        listed = [(r["key_id"], r["threshold_seconds"]) for r in claimed]
        if any(pair not in self.notices for pair in listed):
            # A notice of the digest this sender does not know of (cancelled as it loaded them): next time.
            await digests.unclaim_digest(self.conn, digest_id, username, ctx.owner)
            return True
        recipient = Recipient(username, claimed[0]["email"], claimed[0]["display_name"])
        try:
            message = ctx.renderer.digest(digest_id, [self.notices[pair] for pair in listed], recipient)
        except (ValueError, HeaderParseError) as exc:
            await self._fail(username, f"cannot address: {exc}")
            return True
        except TemplateError as exc:
            log.exception("the digest templates fail to render")
            await digests.release_digest(
                self.conn, digest_id, [username], f"template error: {exc}", ctx.retry, ctx.owner
            )
            return True
        result = await smtp.send(message, recipient.email)
        if result.outcome is Outcome.SENT:
            accepted = time.perf_counter()
            await self._record_sent(username, listed, result.detail)
            UNRECORDED_WINDOW.observe(time.perf_counter() - accepted)
            SEND_LATENCY.observe(result.seconds)
            EMAILS_SENT.labels(DIGEST_LABEL).inc()
            DIGESTS_SENT.inc()
            DIGEST_NOTICES.inc(len(listed))
            return True
        if result.outcome is Outcome.PERMANENT:
            await self._fail(username, result.detail)
            log.warning("digest to %s refused for good: %s", recipient.email, result.detail)
            return True
        await digests.release_digest(self.conn, digest_id, [username], result.detail, ctx.retry, ctx.owner)
        EMAILS_FAILED.labels(DIGEST_LABEL, "transient").inc()
        log.warning("digest to %s will be retried: %s", recipient.email, result.detail)
        return result.connection_ok

    async def _fail(self, username: str, error: str) -> None:
        await digests.fail_digest(self.conn, self.digest_id, username, self.ctx.owner, error)
        EMAILS_FAILED.labels(DIGEST_LABEL, "permanent").inc()

    async def _record_sent(self, username: str, listed: list[tuple[UUID, int]], response: str) -> None:
        """The ledger must learn of an accepted digest before the claims time out, or the digest goes again:
        a database hiccup here is retried on fresh connections for up to half the claim timeout."""
        try:
            await digests.mark_digest_sent(self.conn, self.digest_id, username, listed, response)
            return
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            log.warning("could not record a sent digest; retrying", exc_info=True)
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(self.ctx.claim_timeout.total_seconds() / 2),
            wait=wait_exponential(multiplier=0.1, max=5),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        ):
            with attempt:
                await digests.mark_digest_sent(self.ctx.pool, self.digest_id, username, listed, response)
