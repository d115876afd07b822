"""Every SQL statement of the keys: the keys, their audit and the watchers' queries (the outbox's are in
`outbox/repository.py`)."""

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from services.keys import events
from shared.events import KeyDeleted

KEY_COLUMNS = (
    "id, name, organization_id, organization_name, tenant_id, created_by, created_at, expires_at, "
    "last_used_at, key_display, replaces, replaced_by, first_used_at"
)
SECRET_COLUMNS = "ciphertext, enc_key_id"
# The names from the tenant down to a key `k`'s organization (the system root left out): what an e-mail
# about the key shows, carried by its `expiring` event so that the notifier need not ask for it.
ORGANIZATION_NAMES = """(
    SELECT array_agg(o.name ORDER BY nlevel(o.path)) FROM keys.organizations o
    WHERE o.path @> k.organization_path AND nlevel(o.path) > 1
) AS organization_names"""

# Sort field -> (SQL expression, how a cursor value is cast back). Each has an index on (expr, id).
SORTS: dict[str, tuple[str, str]] = {
    "name": ("lower(name)", "text"),
    "organization": ("lower(organization_name)", "text"),
    "created_by": ("lower(created_by)", "text"),
    "expires_at": ("expires_at", "timestamptz"),
    "created_at": ("created_at", "timestamptz"),
    "key": ("key_display", "text"),
}


def like_pattern(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Where:
    """A WHERE clause built from the filters that apply, so each query plans for what it really filters on."""

    def __init__(self, *conditions: str) -> None:
        self.conditions = list(conditions)
        self.args: list[Any] = []

    def add(self, template: str, value: Any) -> "Where":
        self.args.append(value)
        self.conditions.append(template.replace("?", f"${len(self.args)}"))
        return self

    def reach(self, subtree: str | None) -> "Where":
        return self if subtree is None else self.add("organization_path <@ ?::ltree", subtree)

    def search(self, q: str | None) -> "Where":
        return self if not q else self.add("search_text LIKE ?", like_pattern(q))

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    @property
    def sql(self) -> str:
        return " AND ".join(self.conditions) or "true"


LIVE = "expires_at > now()"


async def insert_key(conn: asyncpg.Connection, values: dict[str, Any]) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""
        INSERT INTO keys.api_keys (id, name, organization_id, organization_path, organization_name, tenant_id,
            created_by, created_at, expires_at, key_display, digest, digest_key_id, ciphertext, enc_key_id, replaces)
        VALUES ($1, $2, $3, $4::ltree, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        RETURNING {KEY_COLUMNS}
        """,
        values["id"],
        values["name"],
        values["organization_id"],
        values["organization_path"],
        values["organization_name"],
        values["tenant_id"],
        values["created_by"],
        values["created_at"],
        values["expires_at"],
        values["key_display"],
        values["digest"],
        values["digest_key_id"],
        values["ciphertext"],
        values["enc_key_id"],
        values.get("replaces"),
    )


async def key(
    conn: asyncpg.Connection, key_id: UUID, reach: str | None, *, with_secret: bool = False, lock: bool = False
) -> asyncpg.Record | None:
    columns = f"{KEY_COLUMNS}, {SECRET_COLUMNS}" if with_secret else KEY_COLUMNS
    where = Where(LIVE).add("id = ?", key_id).reach(reach)
    return await conn.fetchrow(
        f"SELECT {columns} FROM keys.api_keys WHERE {where.sql} {'FOR UPDATE' if lock else ''}", *where.args
    )


async def standing(conn: asyncpg.Connection, ids: Sequence[UUID]) -> list[asyncpg.Record]:
    """The live keys among `ids`, with their organizations' names (for the notifier's check of an event)."""
    return await conn.fetch(
        f"""
        SELECT k.id AS key_id, k.tenant_id, k.organization_id, k.name, k.key_display, k.created_by, k.created_at,
            k.expires_at, {ORGANIZATION_NAMES}, k.replaced_by, s.first_used_at AS successor_in_use_since
        FROM keys.api_keys k LEFT JOIN keys.api_keys s ON s.id = k.replaced_by
        WHERE k.id = ANY($1::uuid[]) AND k.expires_at > now()
        """,
        list(ids),
    )


async def mark_replaced(
    conn: asyncpg.Connection, key_id: UUID, successor_id: UUID, overlap_ends_at: datetime
) -> asyncpg.Record:
    """A rolled key: linked to its successor (which frees its name), verifying until the overlap ends at most."""
    return await conn.fetchrow(
        f"""
        UPDATE keys.api_keys SET replaced_by = $2, expires_at = least(expires_at, $3)
        WHERE id = $1 RETURNING {KEY_COLUMNS}
        """,
        key_id,
        successor_id,
        overlap_ends_at,
    )


async def first_used_at(conn: asyncpg.Connection, key_id: UUID) -> datetime | None:
    return await conn.fetchval("SELECT first_used_at FROM keys.api_keys WHERE id = $1", key_id)  # type: ignore[no-any-return]


async def rename_key(conn: asyncpg.Connection, key_id: UUID, name: str) -> asyncpg.Record:
    return await conn.fetchrow(
        f"UPDATE keys.api_keys SET name = $2 WHERE id = $1 RETURNING {KEY_COLUMNS}", key_id, name
    )


async def delete_keys(conn: asyncpg.Connection, ids: Sequence[UUID], reach: str | None) -> list[asyncpg.Record]:
    where = Where(LIVE).add("id = ANY(?::uuid[])", list(ids)).reach(reach)
    return await conn.fetch(f"DELETE FROM keys.api_keys WHERE {where.sql} RETURNING {KEY_COLUMNS}", *where.args)


async def list_keys(
    conn: asyncpg.Connection,
    *,
    subtree: str | None,
    q: str | None,
    sort: str,
    descending: bool,
    after: tuple[Any, UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    expr, cast = SORTS[sort]
    direction = "DESC" if descending else "ASC"
    where = Where(LIVE).reach(subtree).search(q)
    if after is not None:
        value, last_id = where.param(after[0]), where.param(after[1])
        where.conditions.append(f"({expr}, id) {'<' if descending else '>'} ({value}::{cast}, {last_id}::uuid)")
    return await conn.fetch(
        f"""
        SELECT {KEY_COLUMNS}, {expr} AS sort_value FROM keys.api_keys
        WHERE {where.sql}
        ORDER BY {expr} {direction}, id {direction}
        LIMIT {where.param(limit)}
        """,
        *where.args,
    )


async def count_keys(conn: asyncpg.Connection, *, subtree: str | None) -> int:
    """Live keys at and below `subtree`: the kept per-organization counts, less the expired keys the reaper
    has not removed yet (a handful at most, found through the expiry index)."""
    orgs = Where().add("o.path <@ ?::ltree", subtree) if subtree else Where()
    expired = Where("expires_at <= now()").reach(subtree)
    kept = await conn.fetchval(
        f"""
        SELECT coalesce(sum(c.keys), 0) FROM keys.organization_key_counts c
        JOIN keys.organizations o ON o.id = c.organization_id
        WHERE {orgs.sql}
        """,
        *orgs.args,
    )
    gone = await conn.fetchval(f"SELECT count(*) FROM keys.api_keys WHERE {expired.sql}", *expired.args)
    return int(kept) - int(gone)


async def count_matches(conn: asyncpg.Connection, *, subtree: str | None, q: str, cap: int) -> int:
    """How many live keys match a search, counting no further than `cap`."""
    where = Where(LIVE).reach(subtree).search(q)
    return int(
        await conn.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM keys.api_keys WHERE {where.sql} LIMIT {where.param(cap)}) m",
            *where.args,
        )
    )


async def export_rows(
    conn: asyncpg.Connection, *, subtree: str | None, q: str | None, sort: str, descending: bool
) -> AsyncIterator[asyncpg.Record]:
    """A server-side cursor: rows arrive a batch at a time, never all at once. Needs a transaction."""
    expr, _ = SORTS[sort]
    direction = "DESC" if descending else "ASC"
    where = Where(LIVE).reach(subtree).search(q)
    query = f"""
        SELECT {KEY_COLUMNS}, {SECRET_COLUMNS} FROM keys.api_keys
        WHERE {where.sql}
        ORDER BY {expr} {direction}, id {direction}
    """
    async for row in conn.cursor(query, *where.args, prefetch=1000):
        yield row


async def find_by_digest(pool: asyncpg.Pool, digests: list[bytes]) -> asyncpg.Record | None:
    if len(digests) == 1:
        return await pool.fetchrow(
            "SELECT digest, id, organization_id, tenant_id, expires_at FROM keys.api_keys WHERE digest = $1",
            digests[0],
        )
    return await pool.fetchrow(
        "SELECT digest, id, organization_id, tenant_id, expires_at FROM keys.api_keys WHERE digest = ANY($1::bytea[])",
        digests,
    )


async def find_by_digests(pool: asyncpg.Pool, digests: list[bytes]) -> list[asyncpg.Record]:
    """The rows of several verify requests at once (services/keys/lookups.py), each with its digest."""
    return await pool.fetch(
        "SELECT digest, id, organization_id, tenant_id, expires_at FROM keys.api_keys WHERE digest = ANY($1::bytea[])",
        digests,
    )


async def record_usage(pool: asyncpg.Pool, ids: list[UUID], times: list[datetime]) -> None:
    await pool.execute(
        """
        UPDATE keys.api_keys k SET last_used_at = u.at, first_used_at = coalesce(k.first_used_at, u.at)
        FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at)
        WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)
        """,
        ids,
        times,
    )


async def audit(
    conn: asyncpg.Connection,
    actor: str,
    action: str,
    *,
    key: asyncpg.Record | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """-> the row's id."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        INSERT INTO keys.audit_log (actor, action, key_id, key_name, organization_id, details)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING id
        """,
        actor,
        action,
        key["id"] if key else None,
        key["name"] if key else None,
        key["organization_id"] if key else None,
        details or {},
    )


async def add_to_audit(conn: asyncpg.Connection, audit_id: int, details: dict[str, Any]) -> None:
    """What became known after the row was written (how an export ended)."""
    await conn.execute("UPDATE keys.audit_log SET details = details || $2::jsonb WHERE id = $1", audit_id, details)


async def audit_many(
    conn: asyncpg.Connection, actor: str, action: str, keys: Sequence[asyncpg.Record], details: dict[str, Any]
) -> None:
    """One audit row per key, in one statement (a reap writes a thousand: one statement, not a thousand)."""
    await conn.execute(
        """
        INSERT INTO keys.audit_log (actor, action, key_id, key_name, organization_id, details)
        SELECT $1, $2, k.id, k.name, k.organization_id, k.details::jsonb
        FROM unnest($3::uuid[], $4::text[], $5::uuid[], $6::text[]) WITH ORDINALITY
            AS k(id, name, organization_id, details, n)
        ORDER BY k.n
        """,
        actor,
        action,
        [k["id"] for k in keys],
        [k["name"] for k in keys],
        [k["organization_id"] for k in keys],
        [
            orjson.dumps(
                {**details, "created_at": k["created_at"].isoformat(), "expires_at": k["expires_at"].isoformat()}
            ).decode()
            for k in keys
        ],
    )


async def announce_expiring(conn: asyncpg.Connection, thresholds: list[int], limit: int) -> list[asyncpg.Record]:
    """Marks keys that crossed a notice threshold not yet announced with the most imminent one crossed.

    Rows are locked and re-checked, so several watchers never announce one (key, threshold) twice, and a
    key that crossed several thresholds while no watcher ran gets only the most imminent.
    """
    return await conn.fetch(
        f"""
        WITH due AS (
            SELECT k.id, crossed.threshold
            FROM keys.api_keys k
            CROSS JOIN LATERAL (
                SELECT min(t) AS threshold FROM unnest($1::bigint[]) AS t
                WHERE k.expires_at <= now() + make_interval(secs => t)
            ) crossed
            WHERE k.expires_at > now()
              AND k.expires_at <= now() + make_interval(secs => $2)
              AND crossed.threshold IS NOT NULL
              AND (k.noticed_threshold_seconds IS NULL OR crossed.threshold < k.noticed_threshold_seconds)
            ORDER BY k.expires_at
            LIMIT $3
            FOR UPDATE OF k SKIP LOCKED
        )
        UPDATE keys.api_keys k SET noticed_threshold_seconds = due.threshold
        FROM due WHERE k.id = due.id
        RETURNING {", ".join("k." + c.strip() for c in KEY_COLUMNS.split(","))}, due.threshold,
            extract(epoch FROM k.expires_at - now()) AS seconds_left, {ORGANIZATION_NAMES}
        """,
        thresholds,
        max(thresholds),
        limit,
    )


async def keys_stored(conn: asyncpg.Connection) -> int:
    """From the per-organization counts the triggers keep: no scan of the keys."""
    return int(await conn.fetchval("SELECT coalesce(sum(keys), 0) FROM keys.organization_key_counts"))


async def rows_to_rotate(
    conn: asyncpg.Connection, enc_key_id: str, digest_key_id: str, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT id, ciphertext, enc_key_id FROM keys.api_keys
        WHERE enc_key_id <> $1 OR digest_key_id <> $2
        LIMIT $3 FOR UPDATE SKIP LOCKED
        """,
        enc_key_id,
        digest_key_id,
        limit,
    )


async def store_rotated(conn: asyncpg.Connection, rows: list[tuple[UUID, bytes, str, bytes, str]]) -> None:
    await conn.executemany(
        "UPDATE keys.api_keys SET ciphertext = $2, enc_key_id = $3, digest = $4, digest_key_id = $5 WHERE id = $1",
        rows,
    )


def _utc_iso(column: str) -> str:
    """A timestamp as events and the audit write it: ISO 8601 in UTC with a Z."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _deleted_payload() -> str:
    """The `data` of a reap's `deleted` event as PostgreSQL builds it from the deleted row `gone`: the fields
    of KeyDeleted, in its order, named as `events.key_fields` names them. A field added to the event with no
    column of that name fails this statement in every reap test."""
    fixed = {"reason": "'expired'", "deleted_by": "'system'"}
    pairs = []
    for name, field in KeyDeleted.model_fields.items():
        column = fixed.get(name) or events.COLUMN_OF.get(name, name)
        if field.annotation is datetime:
            column = _utc_iso(column)
        pairs.append(f"'{name}', {column}")
    return f"json_build_object({', '.join(pairs)})"


# One statement deletes a batch of expired keys and writes each one's audit row and `deleted` event.
# PostgreSQL builds the rows: made in Python they took the event loop that also answers verify for
# milliseconds a batch.
_REAP = f"""
    WITH gone AS (
        DELETE FROM keys.api_keys WHERE id IN (
            SELECT id FROM keys.api_keys WHERE expires_at <= now()
            ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        RETURNING id, name, organization_id, tenant_id, created_by, created_at, expires_at, key_display
    ), audited AS (
        INSERT INTO keys.audit_log (actor, action, key_id, key_name, organization_id, details)
        SELECT 'system', 'delete', id, name, organization_id, jsonb_build_object(
            'reason', 'expired', 'created_at', {_utc_iso("created_at")}, 'expires_at', {_utc_iso("expires_at")})
        FROM gone ORDER BY expires_at, id
    ), announced AS (
        INSERT INTO keys.outbox (topic, message_key, headers, payload)
        SELECT $2,
            convert_to(coalesce(tenant_id, organization_id)::text, 'UTF8'),
            jsonb_build_array(
                jsonb_build_array('ce_id', gen_random_uuid()::text),
                jsonb_build_array('ce_subject', id::text),
                jsonb_build_array('ce_time', {_utc_iso("now()")})
            ) || $3::jsonb,
            convert_to({_deleted_payload()}::text, 'UTF8')
        FROM gone ORDER BY expires_at, id
    )
    SELECT count(*) FROM gone
"""


async def reap_expired(
    conn: asyncpg.Connection, limit: int, topic: str, fixed_attributes: Sequence[tuple[str, str]]
) -> int:
    """Deletes up to `limit` expired keys, each with its audit row and `deleted` event (reason expired), in one
    statement; rows another reaper holds are skipped, never waited for. -> how many were deleted."""
    return int(await conn.fetchval(_REAP, limit, topic, list(fixed_attributes)))


async def expiry_status(conn: asyncpg.Connection, count_cap: int) -> asyncpg.Record:
    return await conn.fetchrow(
        """
        SELECT (SELECT min(expires_at) FROM keys.api_keys WHERE expires_at <= now()) AS oldest_expired_at,
               (SELECT count(*) FROM (SELECT FROM keys.api_keys WHERE expires_at <= now() LIMIT $1) e) AS expired,
               (SELECT min(expires_at) FROM keys.api_keys WHERE expires_at > now()) AS next_expiry_at,
               now() AS now
        """,
        count_cap,
    )


async def use_claim(conn: asyncpg.Connection, jti: str, expires_at: datetime) -> bool:
    """Records an acting-administrator claim as used; False when it already was (a replay)."""
    return bool(
        await conn.fetchval(
            "INSERT INTO keys.acting_claims (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
            jti,
            expires_at,
        )
    )


async def forget_expired_claims(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM keys.acting_claims WHERE expires_at < now() - interval '1 minute'")
