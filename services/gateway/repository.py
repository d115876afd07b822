"""Every SQL statement of the gateway: the console's sessions and the sign-ins under way (schema `gateway`)."""

from datetime import datetime

import asyncpg

SESSION_COLUMNS = "username, csrf_token, id_token, started_at, last_seen_at, checked_at, expires_at"


async def create_session(
    conn: asyncpg.Connection | asyncpg.Pool,
    digest: bytes,
    username: str,
    csrf_token: str,
    id_token: str | None,
    expires_at: datetime,
    replaces: bytes | None,
) -> None:
    """A new session; the one whose id the browser still carried (`replaces`) ends with it."""
    await conn.execute(
        """
        WITH ended AS (DELETE FROM gateway.sessions WHERE id_digest = $6)
        INSERT INTO gateway.sessions (id_digest, username, csrf_token, id_token, expires_at)
        VALUES ($1, $2, $3, $4, $5)
        """,
        digest,
        username,
        csrf_token,
        id_token,
        expires_at,
        replaces,
    )


async def live_session(
    conn: asyncpg.Connection | asyncpg.Pool, digest: bytes, idle_seconds: float
) -> asyncpg.Record | None:
    """The session, unless it has ended (idle too long, or past its maximum age)."""
    return await conn.fetchrow(
        f"""
        SELECT {SESSION_COLUMNS} FROM gateway.sessions
        WHERE id_digest = $1 AND expires_at > now() AND last_seen_at > now() - make_interval(secs => $2)
        """,
        digest,
        idle_seconds,
    )


async def touch_session(conn: asyncpg.Connection | asyncpg.Pool, digest: bytes, *, checked: bool) -> None:
    """The administrator used the session now (and, with `checked`, was found in the directory now)."""
    await conn.execute(
        """
        UPDATE gateway.sessions SET last_seen_at = now(),
            checked_at = CASE WHEN $2 THEN now() ELSE checked_at END
        WHERE id_digest = $1
        """,
        digest,
        checked,
    )


async def mark_checked(conn: asyncpg.Connection | asyncpg.Pool, digest: bytes) -> None:
    await conn.execute("UPDATE gateway.sessions SET checked_at = now() WHERE id_digest = $1", digest)


async def delete_session(conn: asyncpg.Connection | asyncpg.Pool, digest: bytes) -> asyncpg.Record | None:
    """Ends the session; returns it as it was (its ID token is the provider's sign-out hint)."""
    return await conn.fetchrow(
        f"DELETE FROM gateway.sessions WHERE id_digest = $1 RETURNING {SESSION_COLUMNS}",
        digest,
    )


async def delete_expired(conn: asyncpg.Connection | asyncpg.Pool, idle_seconds: float) -> int:
    """Drops the sessions and sign-ins that have ended; returns how many sessions went."""
    result = await conn.execute(
        """
        WITH sign_ins AS (DELETE FROM gateway.sign_ins WHERE expires_at < now())
        DELETE FROM gateway.sessions
        WHERE expires_at < now() OR last_seen_at < now() - make_interval(secs => $1)
        """,
        idle_seconds,
    )
    return int(result.split()[-1])


async def create_sign_in(
    conn: asyncpg.Connection | asyncpg.Pool,
    digest: bytes,
    *,
    state: str,
    nonce: str,
    code_verifier: str,
    redirect_uri: str,
    next_path: str,
    expires_at: datetime,
) -> None:
    await conn.execute(
        """
        INSERT INTO gateway.sign_ins (id_digest, state, nonce, code_verifier, redirect_uri, next_path, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        digest,
        state,
        nonce,
        code_verifier,
        redirect_uri,
        next_path,
        expires_at,
    )


async def take_sign_in(conn: asyncpg.Connection | asyncpg.Pool, digest: bytes) -> asyncpg.Record | None:
    """The sign-in under way, removed as it is read: its answer can be used once."""
    return await conn.fetchrow(
        """
        DELETE FROM gateway.sign_ins WHERE id_digest = $1
        RETURNING state, nonce, code_verifier, redirect_uri, next_path, expires_at > now() AS live
        """,
        digest,
    )
