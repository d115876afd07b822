"""`python -m shared.migrate [service ...]`: applies every service's migrations (all when none named).

`python -m shared.migrate --wait service ...` applies nothing: it waits (up to MIGRATION_WAIT_SECONDS, 600) until
the named services' migrations are all applied, as a login that may only read which are (an init container of a
Deployment that must not start before its schema is at its version, and is not given the schema owner's login).
"""

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg

from shared.db import migrate, wait_for_migrations

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
DEFAULT_DSN = "postgresql://keyward:keyward@127.0.0.1:55432/keyward"


def migration_folders(names: list[str]) -> dict[str, Path]:
    found = {p.parent.name: p for p in sorted(SERVICES_DIR.glob("*/migrations")) if any(p.glob("*.sql"))}
    if not names:
        return found
    unknown = [n for n in names if n not in found]
    if unknown:
        raise SystemExit(f"no migrations for: {', '.join(unknown)} (known: {', '.join(found)})")
    return {n: found[n] for n in names}


@asynccontextmanager
async def scratch_database(base_dsn: str, prefix: str, *, migrated: bool = True) -> AsyncIterator[str]:
    """A throwaway database beside `base_dsn`'s, with every service's migrations (`migrated=False`: empty);
    dropped on the way out.

    For test runs and benchmarks, which each get their own database instead of cleaning up after themselves.
    """
    name = f"{prefix}_{uuid4().hex[:10]}"
    # A connection for each statement, none held in between: a run that restarts PostgreSQL (the chaos run)
    # would otherwise find it closed when the database is dropped.
    await _on_server(base_dsn, f'CREATE DATABASE "{name}"')
    try:
        url = urlunsplit(urlsplit(base_dsn)._replace(path=f"/{name}"))
        if migrated:
            await migrate_all(url, [])
        yield url
    finally:
        await _on_server(base_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _on_server(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def migrate_all(dsn: str, names: list[str]) -> None:
    for service, folder in migration_folders(names).items():
        applied = await migrate(dsn, service, folder)
        print(f"{service}: {len(applied)} migration(s) applied" + (f" ({', '.join(applied)})" if applied else ""))


async def wait_all(dsn: str, names: list[str], timeout: float) -> None:
    for service, folder in migration_folders(names).items():
        await wait_for_migrations(dsn, service, folder, timeout)
        print(f"{service}: every migration applied")


if __name__ == "__main__":
    dsn, args = os.environ.get("DATABASE_URL", DEFAULT_DSN), sys.argv[1:]
    if args[:1] == ["--wait"]:
        asyncio.run(wait_all(dsn, args[1:], float(os.environ.get("MIGRATION_WAIT_SECONDS", "600"))))
    else:
        asyncio.run(migrate_all(dsn, args))
