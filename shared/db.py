"""PostgreSQL pools and the migration runner shared by every service."""

import hashlib
import logging
from pathlib import Path

import asyncpg
import orjson

log = logging.getLogger(__name__)

# One lock for every service's migrations: two pods starting at once apply each file once.
_MIGRATION_LOCK = 0x6B657977  # "keyw"


def _json_text(value: object) -> str:
    return orjson.dumps(value, default=str).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(name, encoder=_json_text, decoder=orjson.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset query on release: pool connections never hold session state (locks, LISTEN and SET live on
    dedicated connections), and the default reset costs a round trip per request on the hot path."""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10, **kwargs: object) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min(min_size, max_size),
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=60,
        **kwargs,
    )
    assert pool is not None
    return pool


async def migrate(dsn: str, service: str, folder: Path) -> list[str]:
    """Applies the numbered .sql files of `folder` not yet applied for `service`; returns their names."""
    files = sorted(p for p in folder.glob("*.sql") if p.name[:4].isdigit())
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS public.schema_migrations (
                service text NOT NULL,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (service, name)
            )
            """
        )
        rows = await conn.fetch("SELECT name, checksum FROM public.schema_migrations WHERE service = $1", service)
        done = {r["name"]: r["checksum"] for r in rows}
        for path in files:
            sql = path.read_text()
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if path.name in done:
                if done[path.name] != checksum:
                    raise RuntimeError(f"migration {service}/{path.name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO public.schema_migrations (service, name, checksum) VALUES ($1, $2, $3)",
                    service,
                    path.name,
                    checksum,
                )
            log.info("applied migration %s/%s", service, path.name)
            applied_now.append(path.name)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        finally:
            await conn.close()
    return applied_now
