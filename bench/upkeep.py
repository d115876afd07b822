"""Table upkeep around bulk loads: drop the secondary indexes, rebuild them, VACUUM and ANALYZE."""

import asyncio

import asyncpg


async def analyze(dsn: str) -> None:
    """VACUUM too: COPY leaves no visibility map, and a real table that old would have one."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM (ANALYZE) keys.api_keys")
        await conn.execute("ANALYZE keys.organizations; ANALYZE keys.administrators")
    finally:
        await conn.close()


async def drop_secondary_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drops keys.api_keys' indexes that back no constraint; returns their definitions to rebuild them."""
    rows = await conn.fetch(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.schemaname = 'keys' AND i.tablename = 'api_keys'
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
        """
    )
    for row in rows:
        await conn.execute(f'DROP INDEX keys."{row["indexname"]}"')
    return [row["indexdef"] for row in rows]


async def rebuild_indexes(dsn: str, definitions: list[str]) -> None:
    """Rebuilds the dropped indexes, two at a time (one per core)."""
    queue = list(definitions)

    async def builder() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET maintenance_work_mem = '256MB'")
            while queue:
                await conn.execute(queue.pop())
        finally:
            await conn.close()

    await asyncio.gather(builder(), builder())
