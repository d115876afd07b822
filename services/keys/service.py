"""Key use cases: create, reveal, rename, delete, list, export and verify."""

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import orjson

from services.keys import events, keyformat, repository
from services.keys.context import KeysContext
from services.keys.crypto import Sealed
from services.keys.directory import service as directory
from services.keys.directory.service import Actor
from services.keys.export import ROWS_PER_TURN, key_cells, stream_csv
from services.keys.metrics import KEYS_CREATED, KEYS_DELETED, VERIFY_OUTCOMES
from services.keys.outbox import repository as outbox
from services.keys.schemas import ExpiryStatus, Key, KeyCreate, KeyStanding, KeyStandings, KeyWithSecret, ListQuery
from shared.errors import ApiError, Conflict, NotFound
from shared.events import DeleteReason, KeyDeleted, fixed_attributes

log = logging.getLogger(__name__)

INVALID_JSON = orjson.dumps({"valid": False})
# Bound once: the verify path does no label lookups.
_OUTCOMES = {o: VERIFY_OUTCOMES.labels(o) for o in ("malformed", "unknown", "expired", "valid")}
# The reaper paces a mass expiry by the number of expired keys; past this many, counting costs more than
# the figure is worth.
EXPIRED_COUNT_CAP = 1_000_000
# A search's total is counted up to here: past it the list says "1,000+" instead of scanning every match.
SEARCH_COUNT_CAP = 1000
_NAME_TAKEN = ("an API key with this name already exists in this organization", {"name": "already taken"})


_KEY_FIELDS = tuple(Key.model_fields)


def _key(row: asyncpg.Record) -> Key:
    return Key.model_validate({name: row[name] for name in Key.model_fields})


def new_key(ctx: KeysContext, org: Mapping[str, Any], name: str, created_by: str) -> tuple[dict[str, Any], str]:
    """A new key's row for `repository.insert_key` in organization `org`, a full lifetime from now, and the
    plain key (shown once)."""
    key_id = uuid4()
    plain = keyformat.generate()
    sealed = ctx.cipher.seal(plain, key_id)
    now = datetime.now(UTC)
    values = {
        "id": key_id,
        "name": name,
        "organization_id": org["id"],
        "organization_path": org["path"],
        "organization_name": org["name"],
        "tenant_id": org["tenant_id"],
        "created_by": created_by,
        "created_at": now,
        "expires_at": now + ctx.key_lifetime,
        "key_display": keyformat.display(plain),
        "digest": ctx.digester.digest(plain),
        "digest_key_id": ctx.digester.active_id,
        "ciphertext": sealed.blob,
        "enc_key_id": sealed.key_id,
    }
    return values, plain


async def create_key(conn: asyncpg.Connection, ctx: KeysContext, actor: Actor, data: KeyCreate) -> KeyWithSecret:
    async with conn.transaction():
        org = await directory.reachable_organization(conn, data.organization_id, actor.reach)
        if org is None:
            raise NotFound("organization")
        values, plain = new_key(ctx, org, data.name, actor.username)
        try:
            row = await repository.insert_key(conn, values)
        except asyncpg.UniqueViolationError:
            raise Conflict(*_NAME_TAKEN) from None
        await repository.audit(conn, actor.username, "create", key=row)
        await outbox.add_events(conn, ctx.topic, [events.created(row)])
    KEYS_CREATED.inc()
    return KeyWithSecret(**_key(row).model_dump(), key=plain)


async def reveal_key(conn: asyncpg.Connection, ctx: KeysContext, actor: Actor, key_id: UUID) -> KeyWithSecret:
    async with conn.transaction():
        row = await repository.key(conn, key_id, actor.reach, with_secret=True)
        if row is None:
            raise NotFound("API key")
        await repository.audit(conn, actor.username, "reveal", key=row)
        in_use_since = await repository.first_used_at(conn, row["replaced_by"]) if row["replaced_by"] else None
    plain = ctx.cipher.open(Sealed(row["enc_key_id"], row["ciphertext"]), row["id"])
    return KeyWithSecret(**_key(row).model_dump(), key=plain, successor_in_use_since=in_use_since)


async def rename_key(conn: asyncpg.Connection, ctx: KeysContext, actor: Actor, key_id: UUID, name: str) -> Key:
    async with conn.transaction():
        before = await repository.key(conn, key_id, actor.reach, lock=True)
        if before is None:
            raise NotFound("API key")
        if before["name"] == name:
            return _key(before)
        try:
            row = await repository.rename_key(conn, key_id, name)
        except asyncpg.UniqueViolationError:
            raise Conflict(*_NAME_TAKEN) from None
        await repository.audit(conn, actor.username, "rename", key=row, details={"previous_name": before["name"]})
        await outbox.add_events(conn, ctx.topic, [events.updated(row, before["name"])])
    return _key(row)


async def delete_keys(
    conn: asyncpg.Connection, ctx: KeysContext, actor: Actor, ids: Sequence[UUID], reason: DeleteReason
) -> list[UUID]:
    """Deletes all of `ids` or none: one unknown or unreachable id makes the whole call a 404."""
    wanted = list(dict.fromkeys(ids))
    async with conn.transaction():
        rows = await repository.delete_keys(conn, wanted, actor.reach)
        if len(rows) != len(wanted):
            missing = sorted({str(i) for i in wanted} - {str(r["id"]) for r in rows})
            raise ApiError(404, f"API key not found: {', '.join(missing)}", code="not_found")
        await repository.audit_many(conn, actor.username, "delete", rows, {"reason": reason})
        await outbox.add_events(conn, ctx.topic, [events.deleted(r, reason, actor.username) for r in rows])
    KEYS_DELETED.labels(reason).inc(len(rows))
    return [r["id"] for r in rows]


async def _subtree(conn: asyncpg.Connection, actor: Actor, organization_id: UUID | None) -> str | None:
    if organization_id is None:
        return actor.reach
    org = await directory.reachable_organization(conn, organization_id, actor.reach)
    if org is None:
        raise NotFound("organization")
    return str(org["path"])


def encode_cursor(query: ListQuery, row: asyncpg.Record) -> str:
    value = row["sort_value"]
    raw = [query.sort, query.order, value.isoformat() if isinstance(value, datetime) else value, str(row["id"])]
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def decode_cursor(query: ListQuery) -> tuple[Any, UUID] | None:
    if query.cursor is None:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(query.cursor + "=" * (-len(query.cursor) % 4)))
        sort, order, value, last_id = raw
        if (sort, order) != (query.sort, query.order):
            raise ValueError("the cursor belongs to another sort order")
        _, cast = repository.SORTS[sort]
        parsed = datetime.fromisoformat(value) if cast == "timestamptz" else str(value)
        return parsed, UUID(last_id)
    except (ValueError, TypeError, KeyError, binascii.Error, json.JSONDecodeError) as exc:
        raise ApiError(400, f"invalid cursor: {exc}" if "sort order" in str(exc) else "invalid cursor") from None


async def list_keys(conn: asyncpg.Connection, actor: Actor, query: ListQuery) -> bytes:
    """A KeyPage as JSON. The rows come from our own SQL, so they are encoded as they are, without a
    round of model validation per item: the list is the console's busiest call."""
    subtree = await _subtree(conn, actor, query.organization_id)
    after = decode_cursor(query)
    q = query.q.strip() if query.q else None
    rows = await repository.list_keys(
        conn,
        subtree=subtree,
        q=q,
        sort=query.sort,
        descending=query.order == "desc",
        after=after,
        limit=query.limit + 1,
    )
    if q:
        total = await repository.count_matches(conn, subtree=subtree, q=q, cap=SEARCH_COUNT_CAP + 1)
        exact = total <= SEARCH_COUNT_CAP
        total = min(total, SEARCH_COUNT_CAP)
    else:
        total, exact = await repository.count_keys(conn, subtree=subtree), True
    page = rows[: query.limit]
    next_cursor = encode_cursor(query, page[-1]) if len(rows) > query.limit else None
    items = [{name: row[name] for name in _KEY_FIELDS} for row in page]
    body = {"items": items, "next_cursor": next_cursor, "total": total, "total_exact": exact}
    return orjson.dumps(body, default=str, option=orjson.OPT_UTC_Z)


async def export_keys(
    conn: asyncpg.Connection, ctx: KeysContext, actor: Actor, query: ListQuery
) -> AsyncIterator[bytes]:
    """Checks reach and audits before the first byte; then streams rows from one server-side cursor.

    `conn` must stay the caller's until the stream ends: the route's connection does (FastAPI releases
    it after the response is sent). The caller closes the stream when it ends it early (`aclose`: the
    transaction ends and the audit row says how far it went)."""
    subtree = await _subtree(conn, actor, query.organization_id)
    details: dict[str, Any] = {
        "organization_id": str(query.organization_id) if query.organization_id else None,
        "q": query.q,
    }
    # Written unfinished: a stream cut off before its end (a reader gone, stalled or past the deadline) that
    # could not record its end still reads as unfinished.
    details |= {"keys": 0, "finished": False}
    audit_id = await repository.audit(conn, actor.username, "export", details=details)

    async def body() -> AsyncIterator[bytes]:
        carried, finished = 0, False

        async def counted(cells: AsyncIterator[tuple[str, ...]]) -> AsyncIterator[tuple[str, ...]]:
            nonlocal carried
            async for row in cells:
                carried += 1
                yield row
                if not carried % ROWS_PER_TURN:
                    await ctx.verifying.give_way()

        try:
            async with conn.transaction(readonly=True, isolation="repeatable_read"):
                rows = repository.export_rows(
                    conn,
                    subtree=subtree,
                    q=query.q.strip() if query.q else None,
                    sort=query.sort,
                    descending=query.order == "desc",
                )
                async with contextlib.aclosing(stream_csv(counted(key_cells(rows, ctx.cipher)))) as chunks:
                    async for chunk in chunks:
                        yield chunk
            finished = True
        finally:
            # Rows handed to the response, and whether the last byte went: a reader that went away is
            # `finished: false` with the rows sent until then.
            try:
                await repository.add_to_audit(conn, audit_id, {"keys": carried, "finished": finished})
            except Exception:
                log.warning("could not record how export %d ended", audit_id, exc_info=True)

    return body()


async def verify(ctx: KeysContext, key: str) -> bytes:
    """The JSON answer, ready to send: the hot path skips the response model's validation and encoding."""
    # Whatever went wrong, the caller gets the same `{"valid": false}`; only the metric tells them apart.
    if not keyformat.is_well_formed(key):
        _OUTCOMES["malformed"].inc()
        return INVALID_JSON
    verifying = ctx.verifying
    verifying.enter()
    try:
        row = await ctx.lookups.find(ctx.digester.candidates(key))
    finally:
        verifying.leave()
    if row is None:
        _OUTCOMES["unknown"].inc()
        return INVALID_JSON
    now = datetime.now(UTC)
    if row["expires_at"] <= now:
        _OUTCOMES["expired"].inc()
        return INVALID_JSON
    ctx.usage.touch(row["id"], now)
    _OUTCOMES["valid"].inc()
    answer = {
        "valid": True,
        "key_id": str(row["id"]),
        "organization_id": str(row["organization_id"]),
        "expires_at": row["expires_at"],
    }
    if row["tenant_id"] is not None:
        answer["tenant_id"] = str(row["tenant_id"])
    return orjson.dumps(answer, option=orjson.OPT_UTC_Z)


async def reap_expired(conn: asyncpg.Connection, ctx: KeysContext, limit: int) -> int:
    """Deletes a batch of expired keys with their audit and `deleted` events (reason expired), atomically."""
    deleted = await repository.reap_expired(conn, limit, ctx.topic, fixed_attributes(KeyDeleted.type))
    KEYS_DELETED.labels("expired").inc(deleted)
    return deleted


async def expiry_status(conn: asyncpg.Connection) -> ExpiryStatus:
    """The oldest expired key still present, how many there are (up to EXPIRED_COUNT_CAP), the next expiry."""
    return ExpiryStatus.model_validate(dict(await repository.expiry_status(conn, EXPIRED_COUNT_CAP)))


async def standings(conn: asyncpg.Connection, key_ids: list[UUID]) -> KeyStandings:
    """The keys among `key_ids` that exist and have not expired, as they stand (the notifier's check)."""
    rows = await repository.standing(conn, key_ids)
    return KeyStandings(
        items=[KeyStanding.model_validate({**r, "organization_names": r["organization_names"] or []}) for r in rows]
    )


async def first_use_of_claim(conn: asyncpg.Connection, jti: str, expires_at: int) -> bool:
    """Whether an acting-administrator claim is used for the first time (and from now on, used)."""
    return await repository.use_claim(conn, jti, datetime.fromtimestamp(expires_at, UTC))
