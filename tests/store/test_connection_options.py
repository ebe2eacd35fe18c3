"""``?prepare_threshold=none`` in a PostgreSQL URL: no server-side prepared statements, as
PgBouncer's transaction mode needs (a prepared statement lives on one server connection,
and the next transaction may get another)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from belfry.adapters.store import open_store
from belfry.adapters.store.errors import StoreUnavailable
from belfry.adapters.store.factory import driver_options


def test_the_option_is_read_and_taken_out_of_the_url() -> None:
    url, options = driver_options(
        make_url("postgresql+psycopg://b@h/db?prepare_threshold=None&sslmode=require")
    )
    assert options == {"prepare_threshold": None}
    assert dict(url.query) == {"sslmode": "require"}  # the rest still reaches libpq
    assert driver_options(make_url("postgresql+psycopg://b@h/db?prepare_threshold=3"))[1] == {
        "prepare_threshold": 3
    }
    plain = make_url("postgresql+psycopg://b@h/db")
    assert driver_options(plain) == (plain, {})
    with pytest.raises(ValueError, match="prepare_threshold: expected none or a number"):
        driver_options(make_url("postgresql+psycopg://b@h/db?prepare_threshold=off"))


async def test_a_bad_value_is_refused_before_connecting() -> None:
    # Port 1: nothing listens there, so the refusal can only come from the option.
    with pytest.raises(StoreUnavailable, match="prepare_threshold: expected none or a number"):
        await open_store("postgresql://nobody@127.0.0.1:1/none?prepare_threshold=maybe")


async def _prepared_after_repeats(url: str) -> int:
    """How many statements the server holds prepared for a connection that ran the same
    query ten times (psycopg prepares after five by default)."""
    store = await open_store(url)
    try:
        async with store.engine.connect() as connection:
            for _ in range(10):
                await connection.execute(text("SELECT count(*) FROM jobs"))
            count = await connection.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
            return int(count or 0)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_prepare_threshold_none_prepares_nothing_on_the_server(pg_url: str) -> None:
    assert await _prepared_after_repeats(pg_url) > 0  # the default, which the option changes
    assert await _prepared_after_repeats(pg_url + "?prepare_threshold=none") == 0
