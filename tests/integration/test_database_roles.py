"""Each service's database login may touch its own schema's rows only (shared/db.py grants it)."""

import asyncpg
import pytest

from tests.fixtures.processes import database_login

FOREIGN = {
    "notifier": ["SELECT count(*) FROM keys.api_keys", "UPDATE keys.api_keys SET tenant_id = NULL WHERE false"],
    "reaper": ["SELECT count(*) FROM keys.api_keys", "DELETE FROM keys.administrators WHERE false"],
    "keys": ["SELECT count(*) FROM notifier.deliveries", "SELECT count(*) FROM reaper.schedule"],
    "gateway": ["SELECT count(*) FROM keys.api_keys", "SELECT count(*) FROM notifier.deliveries"],
}
OWN = {
    "keys": "SELECT count(*) FROM keys.api_keys",
    "notifier": "SELECT count(*) FROM notifier.deliveries",
    "reaper": "SELECT count(*) FROM reaper.schedule",
    "gateway": "SELECT count(*) FROM gateway.sessions",
}


@pytest.mark.parametrize("service", sorted(FOREIGN))
async def test_a_services_login_is_refused_another_services_tables(database_url: str, service: str):
    conn = await asyncpg.connect(database_login(service, database_url))
    try:
        await conn.fetchval(OWN[service])
        for statement in FOREIGN[service]:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"CREATE TABLE {OWN[service].split()[-1]}_copy (id int)")
    finally:
        await conn.close()
