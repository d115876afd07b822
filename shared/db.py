"""PostgreSQL pools and the migration runner shared by every service."""

import asyncio
import hashlib
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson

log = logging.getLogger(__name__)

# One lock for every service's migrations: two pods starting at once apply each file once.
_MIGRATION_LOCK = 0x6B657977  # "keyw"
# A migration runs beside the previous version's pods (a rolling update). Its ALTER TABLE waiting for a table
# lock would queue every later query on that table behind it, so it waits at most MIGRATION_LOCK_TIMEOUT for a
# lock, then gives up (and is tried again, MIGRATION_ATTEMPTS in all, then the init container fails and is
# restarted); no statement holds its locks longer than MIGRATION_STATEMENT_TIMEOUT. A migration that needs
# longer (an index on a big table) says so itself: `SET LOCAL statement_timeout = '10min';` at its top.
MIGRATION_LOCK_TIMEOUT = "3s"
MIGRATION_STATEMENT_TIMEOUT = "60s"
MIGRATION_ATTEMPTS = 3
MIGRATION_RETRY_PAUSE_SECONDS = 2.0


def _json_text(value: object) -> str:
    return orjson.dumps(value, default=str).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(name, encoder=_json_text, decoder=orjson.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset query on release: pool connections never hold session state (locks, LISTEN and SET live on
    dedicated connections), and the default reset costs a round trip per request on the hot path."""


# How long a request waits for a pooled connection by default (DB_ACQUIRE_TIMEOUT): past it the pool is taken.
DEFAULT_ACQUIRE_TIMEOUT_SECONDS = 2.0


class PoolBusy(TimeoutError):
    """Every connection of a pool stayed taken for the acquire bound: the caller gets a 503 with Retry-After
    (a TimeoutError, one of shared.errors.UNAVAILABLE_ERRORS), never a wait without end."""


class BoundedPool(asyncpg.Pool):
    """asyncpg's pool, whose every acquire (its own `fetch`, `execute`… included) waits `acquire_timeout` at most."""

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    async def _acquire(self, timeout: float | None) -> Any:
        # asyncpg's own acquire under asyncio.timeout (no task per call), told apart from a statement's timeout.
        try:
            return await super()._acquire(timeout)  # type: ignore[misc]
        except TimeoutError:
            raise PoolBusy(f"no connection of the pool was free within {timeout} s") from None


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT_SECONDS,
    **kwargs: Any,
) -> BoundedPool:
    """A pool whose every acquire is bounded by `acquire_timeout` seconds (then PoolBusy). A `dsn` ending in
    `?pgbouncer=transaction` goes through PgBouncer in transaction pooling (see `pgbouncer_options`)."""
    dsn, options = pgbouncer_options(dsn)
    pool = BoundedPool(
        dsn,
        **options,
        min_size=min(min_size, max_size),
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        init=_init_connection,
        reset=_keep_session,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        command_timeout=60,
        acquire_timeout=acquire_timeout,
        **kwargs,
    )
    await pool
    return pool


PGBOUNCER_PARAMETER = "pgbouncer"


def pgbouncer_options(dsn: str) -> tuple[str, dict[str, Any]]:
    """(the DSN asyncpg is given, asyncpg's options for it). `?pgbouncer=transaction` says that the address is
    PgBouncer's, pooling by transaction: consecutive statements of one connection may reach different server
    connections, so asyncpg keeps no named prepared statements between them (statement_cache_size=0; Debian
    bookworm's PgBouncer 1.18 does not track them, 1.21+ does with max_prepared_statements). The parameter is
    the pool's alone: a session-bound connection (the relay's lock and LISTEN, the migrations' lock) given such
    a URL fails at once, as it must, since PgBouncer would not keep its session."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    modes = [value for name, value in query if name == PGBOUNCER_PARAMETER]
    if not modes:
        return dsn, {}
    if modes != ["transaction"]:
        raise ValueError(f"{PGBOUNCER_PARAMETER}={modes[-1]!r} in the database URL: only 'transaction' is known")
    rest = urlencode([(name, value) for name, value in query if name != PGBOUNCER_PARAMETER])
    return urlunsplit(parts._replace(query=rest)), {"statement_cache_size": 0}


def _runtime_grants(service: str) -> str:
    """The service's run-time group role (`keyward_<service>_app`, whose member its login is: the local stack's
    `keyward_<service>`, in production the DBA's) may read and write the rows of the service's schema, and
    nothing else: no other service's schema, no DDL. Granted after every run (where the schema exists), so tables
    that later migrations add are covered; the role is made here when the migration role may make roles."""
    role, schema = f"keyward_{service}_app", service
    return f"""
    DO $$ BEGIN
        CREATE ROLE {role} NOLOGIN;
    EXCEPTION
        WHEN duplicate_object THEN NULL;
        WHEN insufficient_privilege THEN RAISE NOTICE 'the migration role may not create roles: {role} must exist';
    END $$;
    GRANT USAGE ON SCHEMA {schema} TO {role};
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
    GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
    GRANT SELECT ON public.schema_migrations TO {role};
    """


def migration_files(folder: Path) -> dict[str, tuple[str, str]]:
    """The numbered .sql files of `folder`, in order: name -> (SQL, its checksum as schema_migrations records it)."""
    found = {}
    for path in sorted(p for p in folder.glob("*.sql") if p.name[:4].isdigit()):
        sql = path.read_text()
        found[path.name] = (sql, hashlib.sha256(sql.encode()).hexdigest())
    return found


async def wait_for_migrations(dsn: str, service: str, folder: Path, timeout: float, poll: float = 2.0) -> None:
    """Returns once every numbered .sql file of `folder` is recorded as applied for `service`, unchanged: for a
    process that must not start before its schema is at its version but may not migrate it (keyward-keys-verify,
    whose login is the service's own, not the schema owner's). TimeoutError after `timeout` seconds."""
    wanted = {name: checksum for name, (_, checksum) in migration_files(folder).items()}
    deadline = time.monotonic() + timeout
    plain, options = pgbouncer_options(dsn)
    while True:
        conn = await asyncpg.connect(plain, **options)
        try:
            rows = await conn.fetch("SELECT name, checksum FROM public.schema_migrations WHERE service = $1", service)
        except (asyncpg.exceptions.UndefinedTableError, asyncpg.exceptions.InsufficientPrivilegeError) as exc:
            # No migration yet, or one under way: the runner grants the service's role its read at the end.
            rows, unreadable = [], isinstance(exc, asyncpg.exceptions.InsufficientPrivilegeError)
        else:
            unreadable = False
        finally:
            await conn.close()
        done = {r["name"]: r["checksum"] for r in rows}
        changed = [name for name, checksum in wanted.items() if name in done and done[name] != checksum]
        if changed:
            raise RuntimeError(f"migration {service}/{changed[0]} differs from the one applied")
        missing = [name for name in wanted if name not in done]
        if not missing:
            return
        if time.monotonic() >= deadline:
            hint = " (this login may not read public.schema_migrations)" if unreadable else ""
            raise TimeoutError(f"{service}: {', '.join(missing)} not applied after {timeout:.0f} s{hint}")
        log.info("waiting for %s's migrations: %s", service, ", ".join(missing))
        await asyncio.sleep(poll)


async def migrate(dsn: str, service: str, folder: Path) -> list[str]:
    """Applies the numbered .sql files of `folder` not yet applied for `service`; returns their names."""
    files = migration_files(folder)
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
        # Only now: waiting for another pod's migrations (the advisory lock above) is not waiting on live traffic.
        await conn.execute(
            f"SET lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'; SET statement_timeout = '{MIGRATION_STATEMENT_TIMEOUT}'"
        )
        for name, (sql, checksum) in files.items():
            if name in done:
                if done[name] != checksum:
                    raise RuntimeError(f"migration {service}/{name} changed after it was applied")
                continue
            for attempt in range(1, MIGRATION_ATTEMPTS + 1):
                try:
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO public.schema_migrations (service, name, checksum) VALUES ($1, $2, $3)",
                            service,
                            name,
                            checksum,
                        )
                    break
                except asyncpg.exceptions.LockNotAvailableError:
                    if attempt == MIGRATION_ATTEMPTS:
                        log.error(
                            "migration %s/%s waited %s for a lock %d times: a transaction holds it; giving up",
                            service,
                            name,
                            MIGRATION_LOCK_TIMEOUT,
                            attempt,
                        )
                        raise
                    log.warning(
                        "migration %s/%s: lock not granted within %s; trying again",
                        service,
                        name,
                        MIGRATION_LOCK_TIMEOUT,
                    )
                    await asyncio.sleep(MIGRATION_RETRY_PAUSE_SECONDS)
            log.info("applied migration %s/%s", service, name)
            applied_now.append(name)
        if await conn.fetchval("SELECT to_regnamespace($1) IS NOT NULL", service):
            await conn.execute(_runtime_grants(service))
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        finally:
            await conn.close()
    return applied_now
