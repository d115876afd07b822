"""Every SQL statement of the notifier: its inbox of handled events, tombstones, notices and the ledger."""

from collections.abc import Sequence
from datetime import timedelta
from typing import TypeAlias
from uuid import UUID

import asyncpg

from shared.events import KeyExpiring

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


class NoticeInDigest(Exception):
    """The notice was taken into a digest (or another one) after it was leased: its digest sends it."""


# A delivery that may be attempted now: pending and due, or claimed by a sender that has since died.
DUE = """((d.status = 'pending' AND d.next_attempt_at <= now())
           OR (d.status = 'sending' AND d.claimed_at < now() - $3::interval))"""


# -- consumer side -----------------------------------------------------------------------------------


async def mark_processed_many(conn: asyncpg.Connection, event_ids: list[str], event_types: list[str]) -> set[str]:
    """Records events as handled, in one statement; -> the ids that were not already (the rest are redeliveries)."""
    rows = await conn.fetch(
        """
        INSERT INTO notifier.processed_events (event_id, event_type)
        SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING RETURNING event_id
        """,
        event_ids,
        event_types,
    )
    return {r["event_id"] for r in rows}


async def insert_notice(
    conn: asyncpg.Connection,
    event_id: str,
    announced_at: object,
    data: KeyExpiring,
    *,
    replaced_by: UUID | None = None,
) -> bool:
    status = await conn.execute(
        """
        INSERT INTO notifier.notices (key_id, threshold_seconds, event_id, tenant_id, organization_id, key_name,
            key_display, created_by, key_created_at, expires_at, announced_at, organization_path, replaced_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
        ON CONFLICT DO NOTHING
        """,
        data.key_id,
        data.threshold_seconds,
        event_id,
        data.tenant_id,
        data.organization_id,
        data.name,
        data.key_display,
        data.created_by,
        data.created_at,
        data.expires_at,
        announced_at,
        # Names from the event when it has them; otherwise the sender asks the keys service.
        data.organization_names or None,
        replaced_by,
    )
    return status.endswith(" 1")


async def add_tombstones(conn: asyncpg.Connection, key_ids: list[UUID], reasons: list[str]) -> None:
    await conn.execute(
        """
        INSERT INTO notifier.deleted_keys (key_id, reason)
        SELECT * FROM unnest($1::uuid[], $2::text[]) ON CONFLICT DO NOTHING
        """,
        key_ids,
        reasons,
    )


async def is_deleted(conn: Conn, key_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM notifier.deleted_keys WHERE key_id = $1)", key_id))


async def cancel_key(conn: asyncpg.Connection, key_id: UUID, reason: str, threshold: int | None = None) -> None:
    """Cancels what is still open for a key (one threshold, or all). A send already in flight that the SMTP
    server accepts is still recorded as sent."""
    await cancel_keys(conn, [key_id], [reason], threshold)


async def cancel_keys(
    conn: asyncpg.Connection, key_ids: list[UUID], reasons: list[str], threshold: int | None = None
) -> None:
    """`cancel_key` for any number of keys, each with its reason, in two statements."""
    await conn.execute(
        """
        UPDATE notifier.deliveries d
        SET status = 'cancelled', claimed_at = NULL, last_error = c.reason, updated_at = now()
        FROM unnest($1::uuid[], $2::text[]) AS c(key_id, reason)
        WHERE d.key_id = c.key_id AND ($3::bigint IS NULL OR d.threshold_seconds = $3)
          AND d.status IN ('pending', 'sending')
        """,
        key_ids,
        reasons,
        threshold,
    )
    await conn.execute(
        """
        UPDATE notifier.notices n SET status = 'cancelled', status_reason = c.reason
        FROM unnest($1::uuid[], $2::text[]) AS c(key_id, reason)
        WHERE n.key_id = c.key_id AND ($3::bigint IS NULL OR n.threshold_seconds = $3) AND n.status = 'open'
        """,
        key_ids,
        reasons,
        threshold,
    )


async def rename_key(conn: asyncpg.Connection, key_id: UUID, name: str) -> None:
    await conn.execute("UPDATE notifier.notices SET key_name = $2 WHERE key_id = $1 AND status = 'open'", key_id, name)


async def purge_processed(conn: Conn, older_than: timedelta) -> int:
    status = await conn.execute(
        "DELETE FROM notifier.processed_events WHERE processed_at < now() - $1::interval", older_than
    )
    return int(status.split()[-1])


# -- sender side -------------------------------------------------------------------------------------


async def lease_due_notices(conn: Conn, limit: int, lease: timedelta, busy: Sequence[str]) -> list[asyncpg.Record]:
    """Open notices due for work, leased so that another replica leaves them alone meanwhile."""
    return await conn.fetch(
        """
        UPDATE notifier.notices n SET next_check_at = now() + $2::interval
        FROM (
            SELECT key_id, threshold_seconds FROM notifier.notices
            WHERE status = 'open' AND next_check_at <= now() AND digest_id IS NULL
              AND key_id::text || '/' || threshold_seconds <> ALL($3::text[])
            ORDER BY next_check_at LIMIT $1
            FOR UPDATE SKIP LOCKED
        ) due
        WHERE n.key_id = due.key_id AND n.threshold_seconds = due.threshold_seconds
        RETURNING n.*
        """,
        limit,
        lease,
        list(busy),
    )


async def reschedule_notice(conn: Conn, key_id: UUID, threshold: int, delay: timedelta) -> None:
    await conn.execute(
        """UPDATE notifier.notices SET next_check_at = now() + $3::interval
           WHERE key_id = $1 AND threshold_seconds = $2 AND status = 'open'""",
        key_id,
        threshold,
        delay,
    )


async def finish_notice(
    conn: Conn,
    key_id: UUID,
    threshold: int,
    claim_timeout: timedelta,
    min_delay: timedelta = timedelta(seconds=1),
    sent: tuple[str, str] | None = None,
) -> bool:
    """Closes the notice when no delivery is open; otherwise sets when to look again (a delivery waiting for
    this recipient's earlier notice is due already: `min_delay` keeps that from spinning). True when this
    call closed it. `sent` (recipient, SMTP response) records the fan-out's last e-mail in the same statement.
    One statement: a notice is finished a thousand times in a mass expiry."""
    closed = await conn.fetchval(
        f"""
        WITH sent AS (
            UPDATE notifier.deliveries SET {sent_set("$6")}
            WHERE key_id = $1 AND threshold_seconds = $2 AND recipient = $5
        ), open AS (
            SELECT count(*) AS n,
                   min(CASE WHEN status = 'pending' THEN next_attempt_at ELSE claimed_at + $3::interval END) AS next_at
            FROM notifier.deliveries
            WHERE key_id = $1 AND threshold_seconds = $2 AND status IN ('pending', 'sending')
              AND recipient IS DISTINCT FROM $5
        )
        UPDATE notifier.notices n
        SET status = CASE WHEN open.n = 0 THEN 'done' ELSE n.status END,
            next_check_at = CASE WHEN open.n = 0 THEN n.next_check_at
                                 ELSE greatest(open.next_at, now() + $4::interval) END
        FROM open
        WHERE n.key_id = $1 AND n.threshold_seconds = $2 AND n.status = 'open'
        RETURNING open.n = 0
        """,
        key_id,
        threshold,
        claim_timeout,
        min_delay,
        sent[0] if sent else None,
        sent[1][:500] if sent else None,
    )
    return bool(closed)


async def set_organization_path(conn: Conn, key_id: UUID, threshold: int, path: list[str]) -> None:
    await conn.execute(
        "UPDATE notifier.notices SET organization_path = $3 WHERE key_id = $1 AND threshold_seconds = $2",
        key_id,
        threshold,
        path,
    )


async def align_deliveries(
    conn: asyncpg.Connection,
    key_id: UUID,
    threshold: int,
    claim_timeout: timedelta,
    recipients: Sequence[tuple[str, str, str, str]],
    digest_id: UUID | None = None,
) -> list[str] | None:
    """Brings the deliveries in line with the directory as it stands: (username, email, name, message id).
    Returns the recipients due now, in order; None, writing nothing, when the key is deleted. The new
    deliveries carry `digest_id`, which must be the notice's: NoticeInDigest, writing nothing, when a digest
    took the notice (it locks the notice's row, so no digest takes it meanwhile).

    A new administrator gets a delivery; one no longer listed loses a pending one; a changed address is used.
    One statement (the insert and the cancel touch disjoint rows), so it is atomic without a transaction. Its
    parts all see the rows as they were before it, so the new deliveries are the listed names without a row.
    The answer is a hint: each delivery's claim checks again."""
    row = await conn.fetchrow(
        f"""
        WITH dead AS (
            SELECT EXISTS (SELECT 1 FROM notifier.deleted_keys WHERE key_id = $1) AS yes
        ), notice AS (
            SELECT digest_id IS NOT DISTINCT FROM $8::uuid AS mine FROM notifier.notices
            WHERE key_id = $1 AND threshold_seconds = $2 FOR SHARE
        ), listed AS (
            SELECT * FROM unnest($4::text[], $5::text[], $6::text[], $7::text[])
                AS r(username, email, display_name, message_id)
        ), upserted AS (
            INSERT INTO notifier.deliveries AS d (key_id, threshold_seconds, recipient, email, display_name, message_id,
                digest_id)
            SELECT $1, $2, l.username, l.email, l.display_name, l.message_id, $8 FROM listed l, dead, notice
            WHERE NOT dead.yes AND notice.mine
            ON CONFLICT (key_id, threshold_seconds, recipient) DO UPDATE
                SET email = EXCLUDED.email, display_name = EXCLUDED.display_name, updated_at = now()
                WHERE d.status = 'pending'
                  AND (d.email, d.display_name) IS DISTINCT FROM (EXCLUDED.email, EXCLUDED.display_name)
        ), cancelled AS (
            UPDATE notifier.deliveries SET status = 'cancelled', updated_at = now(),
                last_error = 'no longer a customer administrator of the tenant'
            WHERE key_id = $1 AND threshold_seconds = $2 AND status = 'pending' AND recipient <> ALL($4::text[])
              AND NOT (SELECT yes FROM dead) AND (SELECT mine FROM notice)
        )
        SELECT (SELECT yes FROM dead) AS deleted, (SELECT mine FROM notice) AS mine, ARRAY(
            SELECT d.recipient FROM notifier.deliveries d
            WHERE d.key_id = $1 AND d.threshold_seconds = $2 AND {DUE}
              AND (d.status = 'sending' OR d.recipient = ANY($4::text[]))
            UNION
            SELECT l.username FROM listed l
            WHERE NOT EXISTS (SELECT 1 FROM notifier.deliveries d
                              WHERE d.key_id = $1 AND d.threshold_seconds = $2 AND d.recipient = l.username)
            ORDER BY 1
        ) AS due
        """,
        key_id,
        threshold,
        claim_timeout,
        [r[0] for r in recipients],
        [r[1] for r in recipients],
        [r[2] for r in recipients],
        [r[3] for r in recipients],
        digest_id,
    )
    assert row is not None
    if row["mine"] is False:
        raise NoticeInDigest(f"notice {key_id}/{threshold} is another digest's")
    return None if row["deleted"] else list(row["due"])


async def claim(
    conn: Conn,
    key_id: UUID,
    threshold: int,
    claim_timeout: timedelta,
    recipient: str,
    owner: str,
    sent: tuple[str, str] | None = None,
) -> asyncpg.Record | None:
    """Claims one delivery right before its send: the row is updated only if still due, its key not deleted
    and this recipient's earlier notices for the key all settled. None when another sender won or it waits.

    `sent` (recipient, SMTP response) records the fan-out's previous delivery as sent in the same statement,
    so a fan-out costs one commit per e-mail, not two."""
    return await conn.fetchrow(
        f"""
        WITH sent AS (
            UPDATE notifier.deliveries SET {sent_set("$7")}
            WHERE key_id = $1 AND threshold_seconds = $2 AND recipient = $6
        )
        UPDATE notifier.deliveries d
        SET status = 'sending', claimed_at = now(), claimed_by = $5, attempts = attempts + 1, updated_at = now()
        WHERE key_id = $1 AND threshold_seconds = $2 AND recipient = $4 AND {DUE} AND d.digest_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM notifier.deleted_keys t WHERE t.key_id = d.key_id)
          AND NOT EXISTS (
              SELECT 1 FROM notifier.deliveries e
              WHERE e.key_id = d.key_id AND e.recipient = d.recipient AND e.threshold_seconds > d.threshold_seconds
                AND e.status IN ('pending', 'sending'))
        RETURNING recipient, email, display_name
        """,
        key_id,
        threshold,
        claim_timeout,
        recipient,
        owner,
        sent[0] if sent else None,
        sent[1][:500] if sent else None,
    )


def sent_set(response_param: str) -> str:
    """SET of a delivery the server accepted: unconditional, whatever happened to the claim meanwhile."""
    return f"""status = 'sent', sent_at = coalesce(sent_at, now()), claimed_at = NULL,
            smtp_response = {response_param}, last_error = NULL, updated_at = now()"""


async def mark_sent(conn: Conn, key_id: UUID, threshold: int, recipient: str, response: str) -> None:
    await conn.execute(
        f"""UPDATE notifier.deliveries SET {sent_set("$4")}
            WHERE key_id = $1 AND threshold_seconds = $2 AND recipient = $3""",
        key_id,
        threshold,
        recipient,
        response[:500],
    )


async def mark_failed(conn: Conn, key_id: UUID, threshold: int, recipient: str, owner: str, error: str) -> None:
    await conn.execute(
        """
        UPDATE notifier.deliveries SET status = 'failed', claimed_at = NULL, last_error = $5, updated_at = now()
        WHERE key_id = $1 AND threshold_seconds = $2 AND recipient = $3 AND status = 'sending' AND claimed_by = $4
        """,
        key_id,
        threshold,
        recipient,
        owner,
        error[:1000],
    )


async def unclaim(conn: Conn, key_id: UUID, threshold: int, recipient: str, owner: str) -> None:
    """Gives back this sender's claim of a delivery it never began to send: due at once, the attempt uncounted."""
    await conn.execute(
        """
        UPDATE notifier.deliveries SET status = 'pending', claimed_at = NULL, attempts = attempts - 1,
            next_attempt_at = now(), updated_at = now()
        WHERE key_id = $1 AND threshold_seconds = $2 AND recipient = $3 AND status = 'sending' AND claimed_by = $4
        """,
        key_id,
        threshold,
        recipient,
        owner,
    )


# SET of deliveries put back to pending (parameters: the first and the longest wait, the error): exponential
# backoff from the attempts so far (this one included), with ±20 % jitter.
def backoff_set(initial: str, longest: str, error: str) -> str:
    return f"""status = 'pending', claimed_at = NULL, last_error = {error}, updated_at = now(),
            attempts = attempts + CASE WHEN status = 'pending' THEN 1 ELSE 0 END,
            next_attempt_at = now() + least(
                {longest}::interval,
                {initial}::interval * power(2, least(attempts + CASE WHEN status = 'pending' THEN 1 ELSE 0 END - 1, 24))
            ) * (0.8 + random() * 0.4)"""


async def release(
    conn: Conn,
    key_id: UUID,
    threshold: int,
    recipients: Sequence[str],
    error: str,
    retry: tuple[timedelta, timedelta],
    owner: str | None = None,
) -> None:
    """Puts deliveries back to pending with a backoff: this sender's claims (`owner`), or due pending ones
    never claimed because the connection failed first (those count an attempt here)."""
    await conn.execute(
        f"""
        UPDATE notifier.deliveries SET {backoff_set("$4", "$5", "$6")}
        WHERE key_id = $1 AND threshold_seconds = $2 AND recipient = ANY($3::text[])
          AND CASE WHEN $7::text IS NULL THEN status = 'pending' ELSE status = 'sending' AND claimed_by = $7 END
        """,
        key_id,
        threshold,
        list(recipients),
        retry[0],
        retry[1],
        error[:1000],
        owner,
    )


# -- reads -------------------------------------------------------------------------------------------


async def notices_of(conn: Conn, key_ids: Sequence[UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT d.key_id, d.threshold_seconds, d.recipient AS username, d.email, d.display_name, d.status,
               d.attempts, d.sent_at, d.last_error, d.created_at, d.updated_at, n.announced_at
        FROM notifier.deliveries d JOIN notifier.notices n USING (key_id, threshold_seconds)
        WHERE d.key_id = ANY($1::uuid[])
        ORDER BY d.key_id, d.threshold_seconds DESC, d.recipient
        """,
        list(key_ids),
    )


async def ledger_backlog(conn: Conn, claim_timeout: timedelta) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT CASE WHEN status = 'sending' AND claimed_at < now() - $1::interval THEN 'stale' ELSE status END AS state,
               count(*) AS n
        FROM notifier.deliveries WHERE status IN ('pending', 'sending') GROUP BY 1
        """,
        claim_timeout,
    )
