"""A database URL through PgBouncer (`?pgbouncer=transaction`): asyncpg keeps no prepared statement, and the
parameter, which is the pool's, never reaches the server."""

import pytest

from shared.db import pgbouncer_options


def test_a_direct_url_is_left_as_it_is():
    url = "postgresql://keyward_keys:secret@db:5432/keyward?sslmode=require"
    assert pgbouncer_options(url) == (url, {})


def test_transaction_pooling_turns_the_statement_cache_off_and_leaves_the_parameter_out():
    url = "postgresql://keyward_keys:p%40ss@pgbouncer:6432/keyward?sslmode=require&pgbouncer=transaction"
    dsn, options = pgbouncer_options(url)
    assert dsn == "postgresql://keyward_keys:p%40ss@pgbouncer:6432/keyward?sslmode=require"
    assert options == {"statement_cache_size": 0}


@pytest.mark.parametrize("mode", ["session", "true", ""])
def test_a_pooling_mode_other_than_transaction_is_refused_without_showing_the_url(mode):
    with pytest.raises(ValueError) as refused:
        pgbouncer_options(f"postgresql://keyward_keys:secret@pgbouncer:6432/keyward?pgbouncer={mode}")
    assert "secret" not in str(refused.value)
