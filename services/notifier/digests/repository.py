"""Every SQL statement of digests (issue 21): forming them, leasing them, and their deliveries in the ledger,
claimed and marked a recipient's at a time. The ledger's rules (due, sent, backoff) are the single notices'."""

from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

import asyncpg

from services.notifier.repository import DUE, Conn, backoff_set, sent_set


async def undigested_notices(conn: asyncpg.Connection, tenant_ids: Sequence[UUID]) -> list[asyncpg.Record]:
    """The notices of these tenants that a digest may take, locked for it: open, in no digest, and untouched by
    any sender (not leased, no delivery yet), by tenant and when they fell due. Locked rows are another
    transaction's (a sender leasing them): left out."""
    return await conn.fetch(
        """
        SELECT n.key_id, n.threshold_seconds, n.tenant_id, n.announced_at FROM notifier.notices n
        WHERE n.tenant_id = ANY($1::uuid[]) AND n.status = 'open' AND n.digest_id IS NULL
          AND n.next_check_at <= now()
          AND NOT EXISTS (SELECT 1 FROM notifier.deliveries d
                          WHERE d.key_id = n.key_id AND d.threshold_seconds = n.threshold_seconds)
        ORDER BY n.tenant_id, n.announced_at, n.key_id, n.threshold_seconds
        FOR UPDATE OF n SKIP LOCKED
        """,
        list(tenant_ids),
    )


async def create_digests(
    conn: asyncpg.Connection, digests: Sequence[tuple[UUID, UUID]], members: Sequence[tuple[UUID, int, UUID]]
) -> None:
    """New digests (digest id, tenant id) and their notices (key id, threshold, digest id), which no sender
    leases as single notices from now on (`next_check_at` infinity: out of the way of `lease_due_notices`)."""
    await conn.execute(
        "INSERT INTO notifier.digests (digest_id, tenant_id) SELECT * FROM unnest($1::uuid[], $2::uuid[])",
        [d[0] for d in digests],
        [d[1] for d in digests],
    )
    await conn.execute(
        """
        UPDATE notifier.notices n SET digest_id = m.digest_id, next_check_at = 'infinity'
        FROM unnest($1::uuid[], $2::bigint[], $3::uuid[]) AS m(key_id, threshold_seconds, digest_id)
        WHERE n.key_id = m.key_id AND n.threshold_seconds = m.threshold_seconds
        """,
        [m[0] for m in members],
        [m[1] for m in members],
        [m[2] for m in members],
    )


async def lease_due_digests(conn: Conn, limit: int, lease: timedelta, busy: Sequence[str]) -> list[asyncpg.Record]:
    """Open digests due for work, leased as notices are (`busy`: the sender's work by name, `digest/<id>`)."""
    return await conn.fetch(
        """
        UPDATE notifier.digests g SET next_check_at = now() + $2::interval
        FROM (
            SELECT digest_id FROM notifier.digests
            WHERE status = 'open' AND next_check_at <= now() AND 'digest/' || digest_id::text <> ALL($3::text[])
            ORDER BY next_check_at LIMIT $1
            FOR UPDATE SKIP LOCKED
        ) due
        WHERE g.digest_id = due.digest_id
        RETURNING g.*
        """,
        limit,
        lease,
        list(busy),
    )


async def reschedule_digest(conn: Conn, digest_id: UUID, delay: timedelta) -> None:
    await conn.execute(
        "UPDATE notifier.digests SET next_check_at = now() + $2::interval WHERE digest_id = $1 AND status = 'open'",
        digest_id,
        delay,
    )


async def digest_notices(conn: Conn, digest_id: UUID) -> list[asyncpg.Record]:
    """A digest's open notices, the soonest expiry first."""
    return await conn.fetch(
        """SELECT * FROM notifier.notices WHERE digest_id = $1 AND status = 'open'
           ORDER BY expires_at, key_name, key_id, threshold_seconds""",
        digest_id,
    )


async def claim_digest(
    conn: Conn, digest_id: UUID, recipient: str, claim_timeout: timedelta, owner: str
) -> list[asyncpg.Record]:
    """Claims a recipient's deliveries of a digest, all at once or none: none while any of them is not due (a
    backoff, another sender's live claim) or waits for the recipient's earlier notice of its key outside the
    digest. A delivery of a deleted key is left out (its cancellation follows)."""
    return await conn.fetch(
        f"""
        WITH open AS (
            SELECT d.key_id, d.threshold_seconds, {DUE} AS due,
                   EXISTS (SELECT 1 FROM notifier.deleted_keys t WHERE t.key_id = d.key_id) AS dead,
                   EXISTS (SELECT 1 FROM notifier.deliveries e
                           WHERE e.key_id = d.key_id AND e.recipient = d.recipient
                             AND e.threshold_seconds > d.threshold_seconds AND e.status IN ('pending', 'sending')
                             AND e.digest_id IS DISTINCT FROM d.digest_id) AS waits
            FROM notifier.deliveries d
            WHERE d.digest_id = $1 AND d.recipient = $2 AND d.status IN ('pending', 'sending')
            FOR UPDATE OF d
        )
        UPDATE notifier.deliveries d
        SET status = 'sending', claimed_at = now(), claimed_by = $4, attempts = attempts + 1, updated_at = now()
        FROM open o
        WHERE d.key_id = o.key_id AND d.threshold_seconds = o.threshold_seconds AND d.recipient = $2
          AND NOT o.dead AND {DUE}
          AND NOT EXISTS (SELECT 1 FROM open b WHERE NOT b.dead AND (NOT b.due OR b.waits))
        RETURNING d.key_id, d.threshold_seconds, d.email, d.display_name
        """,
        digest_id,
        recipient,
        claim_timeout,
        owner,
    )


async def mark_digest_sent(
    conn: Conn, digest_id: UUID, recipient: str, notices: Sequence[tuple[UUID, int]], response: str
) -> None:
    """Records the deliveries a digest the server accepted listed, in one statement (see `sent_set`)."""
    await conn.execute(
        f"""
        UPDATE notifier.deliveries d SET {sent_set("$5")}
        FROM unnest($3::uuid[], $4::bigint[]) AS c(key_id, threshold_seconds)
        WHERE d.digest_id = $1 AND d.recipient = $2
          AND d.key_id = c.key_id AND d.threshold_seconds = c.threshold_seconds
        """,
        digest_id,
        recipient,
        [n[0] for n in notices],
        [n[1] for n in notices],
        response[:500],
    )


async def fail_digest(conn: Conn, digest_id: UUID, recipient: str, owner: str, error: str) -> None:
    await conn.execute(
        """
        UPDATE notifier.deliveries SET status = 'failed', claimed_at = NULL, last_error = $4, updated_at = now()
        WHERE digest_id = $1 AND recipient = $2 AND status = 'sending' AND claimed_by = $3
        """,
        digest_id,
        recipient,
        owner,
        error[:1000],
    )


async def unclaim_digest(conn: Conn, digest_id: UUID, recipient: str, owner: str) -> None:
    """`unclaim` of a recipient's deliveries of a digest."""
    await conn.execute(
        """
        UPDATE notifier.deliveries SET status = 'pending', claimed_at = NULL, attempts = attempts - 1,
            next_attempt_at = now(), updated_at = now()
        WHERE digest_id = $1 AND recipient = $2 AND status = 'sending' AND claimed_by = $3
        """,
        digest_id,
        recipient,
        owner,
    )


async def release_digest(
    conn: Conn,
    digest_id: UUID,
    recipients: Sequence[str],
    error: str,
    retry: tuple[timedelta, timedelta],
    owner: str | None = None,
) -> None:
    """`release` of recipients' deliveries of a digest: this sender's claims, or their due pending ones."""
    await conn.execute(
        f"""
        UPDATE notifier.deliveries SET {backoff_set("$3", "$4", "$5")}
        WHERE digest_id = $1 AND recipient = ANY($2::text[])
          AND CASE WHEN $6::text IS NULL THEN status = 'pending' AND next_attempt_at <= now()
                   ELSE status = 'sending' AND claimed_by = $6 END
        """,
        digest_id,
        list(recipients),
        retry[0],
        retry[1],
        error[:1000],
        owner,
    )


async def finish_digest(
    conn: Conn, digest_id: UUID, claim_timeout: timedelta, min_delay: timedelta = timedelta(seconds=1)
) -> bool:
    """Closes the digest's notices that have no open delivery, and the digest when none is left; otherwise
    sets when to look again (`finish_notice` for a digest). True when this call closed the digest."""
    closed = await conn.fetchval(
        """
        WITH settled AS (
            UPDATE notifier.notices n SET status = 'done'
            WHERE n.digest_id = $1 AND n.status = 'open' AND NOT EXISTS (
                SELECT 1 FROM notifier.deliveries d
                WHERE d.key_id = n.key_id AND d.threshold_seconds = n.threshold_seconds
                  AND d.status IN ('pending', 'sending'))
        ), open AS (
            SELECT count(*) AS n,
                   min(CASE WHEN status = 'pending' THEN next_attempt_at ELSE claimed_at + $2::interval END) AS next_at
            FROM notifier.deliveries WHERE digest_id = $1 AND status IN ('pending', 'sending')
        )
        UPDATE notifier.digests g
        SET status = CASE WHEN open.n = 0 THEN 'done' ELSE g.status END,
            next_check_at = CASE WHEN open.n = 0 THEN g.next_check_at
                                 ELSE greatest(open.next_at, now() + $3::interval) END
        FROM open
        WHERE g.digest_id = $1 AND g.status = 'open'
        RETURNING open.n = 0
        """,
        digest_id,
        claim_timeout,
        min_delay,
    )
    return bool(closed)
