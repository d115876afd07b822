"""Rolling a key (issue 21): a successor with the same name and organization and a full lifetime, and the
predecessor verifying beside it until the overlap ends. Not to be confused with `rotation.py`, which rotates
the secrets that seal and find keys."""

from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from services.keys import events, repository
from services.keys.context import KeysContext
from services.keys.directory import service as directory
from services.keys.directory.service import Actor
from services.keys.metrics import KEYS_CREATED
from services.keys.outbox import repository as outbox
from services.keys.schemas import Key, KeyWithSecret
from services.keys.service import new_key
from shared.errors import Conflict, NotFound

ALREADY_ROLLED = "this API key was already rolled"


async def roll_key(
    conn: asyncpg.Connection, ctx: KeysContext, actor: Actor, key_id: UUID, overlap: timedelta
) -> KeyWithSecret:
    """One transaction: the predecessor locked (a concurrent roll waits, then finds it rolled: 409), linked and
    its expiry brought to the end of the overlap; the successor written; the audit; the successor's `created`,
    the predecessor's `updated` and the `rotated` event. An expired or deleted key, or one outside the
    administrator's reach, is a 404."""
    async with conn.transaction():
        before = await repository.key(conn, key_id, actor.reach, lock=True)
        if before is None:
            raise NotFound("API key")
        if before["replaced_by"] is not None:
            raise Conflict(ALREADY_ROLLED, {"id": f"replaced by {before['replaced_by']}"})
        # Rolling creates a key: the administrator must reach the key's organization (they do, reaching the key).
        org = await directory.reachable_organization(conn, before["organization_id"], actor.reach)
        if org is None:
            raise NotFound("API key")
        values, plain = new_key(ctx, org, before["name"], actor.username)
        values["replaces"] = key_id
        overlap_ends_at = min(before["expires_at"], datetime.now(UTC) + overlap)
        predecessor = await repository.mark_replaced(conn, key_id, values["id"], overlap_ends_at)
        successor = await repository.insert_key(conn, values)
        await repository.audit(
            conn,
            actor.username,
            "roll",
            key=predecessor,
            details={"successor_id": str(successor["id"]), "overlap_ends_at": overlap_ends_at.isoformat()},
        )
        await outbox.add_events(
            conn,
            ctx.topic,
            [
                events.created(successor),
                events.updated(predecessor, before["name"]),
                events.rotated(predecessor, successor, actor.username),
            ],
        )
    KEYS_CREATED.inc()
    key = Key.model_validate({name: successor[name] for name in Key.model_fields})
    return KeyWithSecret(**key.model_dump(), key=plain)
