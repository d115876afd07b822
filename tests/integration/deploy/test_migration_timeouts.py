"""Migrations run in an init container while the previous version's pods serve: one that waits for a table
lock must give up soon rather than queue the live queries behind it, and none may run unbounded."""

import asyncio
import time
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

import shared.db
from shared.db import migrate
from shared.migrate import migration_folders, scratch_database
from tests.fixtures.processes import database_login


@pytest.fixture
async def table(database_url: str) -> str:
    name = f"public.mt_{uuid4().hex[:10]}"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY); INSERT INTO {name} VALUES (1)")
    finally:
        await conn.close()
    return name


def migrations(tmp_path: Path, sql: str) -> Path:
    (tmp_path / "0001_change.sql").write_text(sql)
    return tmp_path


async def test_a_migration_waiting_for_a_lock_gives_up_soon_and_does_not_queue_live_queries_behind_it(
    database_url: str, table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(shared.db, "MIGRATION_RETRY_PAUSE_SECONDS", 0.2, raising=False)
    folder = migrations(tmp_path, f"ALTER TABLE {table} ADD COLUMN added int;")
    service = f"mt-{uuid4().hex[:8]}"
    live = await asyncpg.connect(database_url)  # a long transaction of the serving version
    reader = await asyncpg.connect(database_url)  # the queries that keep coming
    try:
        await live.execute("BEGIN")
        await live.fetchval(f"SELECT count(*) FROM {table}")
        started = time.monotonic()
        migrating = asyncio.create_task(migrate(database_url, service, folder))
        await asyncio.sleep(0.5)  # the ALTER TABLE now waits for its lock
        read_started = time.monotonic()
        assert await asyncio.wait_for(reader.fetchval(f"SELECT count(*) FROM {table}"), 10) == 1
        read_waited = time.monotonic() - read_started
        with pytest.raises(asyncpg.exceptions.LockNotAvailableError):
            await asyncio.wait_for(migrating, 30)
        gave_up_after = time.monotonic() - started
        lock_timeout = float(shared.db.MIGRATION_LOCK_TIMEOUT.removesuffix("s"))
        assert read_waited < lock_timeout + 1, f"a live query waited {read_waited:.1f} s behind the migration"
        assert gave_up_after < shared.db.MIGRATION_ATTEMPTS * (lock_timeout + 1), gave_up_after
        await live.execute("COMMIT")
        assert await migrate(database_url, service, folder) == ["0001_change.sql"], "applied once the lock is free"
    finally:
        await live.close()
        await reader.close()


async def test_a_migration_statement_that_runs_too_long_is_cancelled(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(shared.db, "MIGRATION_STATEMENT_TIMEOUT", "1s", raising=False)
    folder = migrations(tmp_path, "SELECT pg_sleep(5);")
    started = time.monotonic()
    with pytest.raises(asyncpg.exceptions.QueryCanceledError):
        await asyncio.wait_for(migrate(database_url, f"mt-{uuid4().hex[:8]}", folder), 30)
    assert time.monotonic() - started < 4


async def test_waiting_for_migrations_returns_once_they_are_applied_and_reads_as_the_services_own_login(
    database_url: str, tmp_path: Path
):
    """`python -m shared.migrate --wait keys` (keyward-keys-verify's init container): applies nothing, waits for the
    schema owner's run, and needs no more than the service's login; a changed migration is refused."""
    async with scratch_database(database_url, "kw_test_wait", migrated=False) as scratch:
        login = database_login("keys", scratch)
        folder = migration_folders(["keys"])["keys"]
        with pytest.raises(TimeoutError, match="0001"):
            await shared.db.wait_for_migrations(login, "keys", folder, timeout=0.5, poll=0.1)
        waiting = asyncio.create_task(shared.db.wait_for_migrations(login, "keys", folder, timeout=30, poll=0.1))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await migrate(scratch, "keys", folder)
        await asyncio.wait_for(waiting, 10)
        changed = tmp_path / "keys"
        changed.mkdir()
        for path in folder.glob("*.sql"):
            (changed / path.name).write_text(path.read_text() + ("\n-- edited" if path.name.startswith("0001") else ""))
        with pytest.raises(RuntimeError, match="differs"):
            await shared.db.wait_for_migrations(login, "keys", changed, timeout=1, poll=0.1)
