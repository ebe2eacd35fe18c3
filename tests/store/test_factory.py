"""Opening a store from the URLs users write."""

from __future__ import annotations

from pathlib import Path

import pytest

from belfry.adapters.store import StoreUnavailable, database_kind, open_store
from belfry.adapters.store.factory import driver_url, redacted_url


@pytest.mark.parametrize(
    ("url", "kind", "driver"),
    [
        ("sqlite:///belfry.db", "sqlite", "sqlite+aiosqlite:///belfry.db"),
        ("sqlite:////var/lib/belfry/b.db", "sqlite", "sqlite+aiosqlite:////var/lib/belfry/b.db"),
        ("postgresql://u@db:5433/belfry", "postgresql", "postgresql+psycopg://u@db:5433/belfry"),
        ("postgres://u@db/belfry", "postgresql", "postgresql+psycopg://u@db/belfry"),
        ("postgresql+psycopg://u@db/belfry", "postgresql", "postgresql+psycopg://u@db/belfry"),
    ],
)
def test_urls_map_to_async_drivers(url: str, kind: str, driver: str) -> None:
    assert database_kind(url) == kind
    assert driver_url(url).render_as_string(hide_password=False) == driver


@pytest.mark.parametrize(
    "url", ["mysql://u@db/belfry", "postgresql+asyncpg://u@db/x", "not a url", "sqlite://"]
)
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        driver_url(url)


def test_redacted_url_hides_the_password() -> None:
    shown = redacted_url("postgresql://belfry:s3cret@db:5432/belfry")
    assert "s3cret" not in shown
    assert shown.startswith("postgresql://belfry:")
    assert shown.endswith("@db:5432/belfry")


async def test_relative_sqlite_path_gets_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///state/nested/belfry.db")
    try:
        await store.ping()
    finally:
        await store.close()
    assert (tmp_path / "state" / "nested" / "belfry.db").is_file()


async def test_unreachable_postgresql_is_a_clear_error() -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(StoreUnavailable) as caught:
        await open_store("postgresql://belfry:s3cret@127.0.0.1:1/belfry")
    message = str(caught.value)
    assert "\n" not in message
    assert "s3cret" not in message
    assert "127.0.0.1:1/belfry" in message
    assert isinstance(caught.value, ConnectionError)


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just some text that is long enough to matter\n" * 100)
    with pytest.raises(StoreUnavailable, match=r"notes\.txt"):
        await open_store(f"sqlite:///{path}")


async def test_an_unwritable_sqlite_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable, match="unavailable"):
        await open_store(f"sqlite:///{blocker}/sub/belfry.db")
