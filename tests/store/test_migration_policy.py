"""The upgrade policy (docs/operations.md, "Upgrades"): migrations only expand, each one
can be undone, and a server refuses a database a newer Belfry has migrated.

During a rolling upgrade the previous release's servers run on the schema the new release
has just migrated. Running two releases side by side needs both to be built, so the
expand-only rule stands in for it: a static check over every migration's ``upgrade()``
(and the module's helpers it calls) that fails on a drop, a rename, a column made
stricter or a NOT NULL column old servers cannot fill, unless the step is listed below
with the reason it is safe.
"""

from __future__ import annotations

import ast
import asyncio
import re
import socket
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, pool, text

from belfry.adapters.store import open_store
from belfry.adapters.store.factory import (
    MIGRATIONS_DIR,
    VERSION_TABLE,
    SchemaTooNew,
    driver_url,
)

VERSIONS_DIR = MIGRATIONS_DIR / "versions"
BELFRY = str(Path(sys.executable).with_name("belfry"))

# Contract steps, each (revision, operation) with why the previous release survives it.
ALLOWED_CONTRACT_STEPS: dict[tuple[str, str], str] = {
    ("0004", "drop_constraint"): (
        "the occurrence key (job, instant, attempt) is replaced by one with target added; "
        "older servers insert target '' (its server default), so they still collide on it"
    ),
    ("0004", "create_unique_constraint"): "the wider occurrence key replacing the one above",
}

# Operations that take something away from, or tighten, what older code relies on.
_CONTRACTING = {
    "drop_column",
    "drop_table",
    "drop_index",
    "drop_constraint",
    "rename_table",
    "alter_column",
    "create_unique_constraint",
    "create_check_constraint",
}
_CONTRACTING_SQL = re.compile(r"\b(DROP|RENAME|TRUNCATE|DELETE\s+FROM)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    revision: str
    operation: str
    line: int

    def __str__(self) -> str:
        return f"{self.revision}:{self.line}: {self.operation}"


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _reachable(functions: dict[str, ast.FunctionDef], start: str) -> list[ast.FunctionDef]:
    """``start`` and the module's functions it calls, directly or not (a helper such as a
    batch rebuild holds operations too)."""
    seen: dict[str, ast.FunctionDef] = {}
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen[name] = functions[name]
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                todo.append(node.func.id)
    return list(seen.values())


def _keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {keyword.arg: keyword.value for keyword in call.keywords if keyword.arg}


def _unfillable_column(column: ast.expr, assigned: dict[str, ast.expr]) -> bool:
    """A ``sa.Column(..., nullable=False)`` without a server default: INSERTs of servers
    that do not know the column fail."""
    if isinstance(column, ast.Name):
        column = assigned.get(column.id, column)
    if not isinstance(column, ast.Call):
        return False
    options = _keywords(column)
    nullable = options.get("nullable")
    not_null = isinstance(nullable, ast.Constant) and nullable.value is False
    return not_null and "server_default" not in options


def contracting_steps(revision: str, source: str) -> list[Finding]:
    """What ``upgrade()`` in a migration's ``source`` does that older code may not survive."""
    tree = ast.parse(source)
    findings = []
    for function in _reachable(_functions(tree), "upgrade"):
        docstring = _docstring(function)
        assigned = {
            target.id: node.value
            for node in ast.walk(function)
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                operation = node.func.attr
                if operation in _CONTRACTING:
                    findings.append(Finding(revision, operation, node.lineno))
                elif operation == "add_column" and any(
                    _unfillable_column(argument, assigned) for argument in node.args
                ):
                    findings.append(Finding(revision, "add_column NOT NULL", node.lineno))
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _CONTRACTING_SQL.search(node.value)
                and node is not docstring
            ):
                findings.append(Finding(revision, f"SQL {node.value[:40]!r}", node.lineno))
    return findings


def _docstring(function: ast.FunctionDef) -> ast.expr | None:
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        return first.value
    return None


def _migrations() -> dict[str, str]:
    """Revision id -> source of every migration file."""
    found = {}
    for path in sorted(VERSIONS_DIR.glob("*.py")):
        source = path.read_text()
        match = re.search(r'^revision: str = "([^"]+)"', source, re.MULTILINE)
        assert match, f"{path.name}: no revision"
        found[match.group(1)] = source
    return found


def test_the_checker_sees_contracting_steps() -> None:
    # A checker that cannot see a drop would pass any migration.
    source = """
def upgrade() -> None:
    op.drop_column("jobs", "spec")
    _helper()
    late = sa.Column("late", sa.Integer(), nullable=False)
    op.add_column("jobs", late)
    op.add_column("jobs", sa.Column("fine", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("also_fine", sa.Integer(), nullable=True))

def _helper() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("state", new_column_name="status")
    op.execute("DROP INDEX ix_runs_state")

def downgrade() -> None:
    op.drop_table("never_looked_at")
"""
    assert [(f.operation, f.line) for f in contracting_steps("x", source)] == [
        ("drop_column", 3),
        ("add_column NOT NULL", 6),
        ("alter_column", 12),
        ("SQL 'DROP INDEX ix_runs_state'", 13),
    ]


def test_every_migration_only_expands() -> None:
    findings = [
        finding
        for revision, source in _migrations().items()
        for finding in contracting_steps(revision, source)
        if (finding.revision, finding.operation) not in ALLOWED_CONTRACT_STEPS
    ]
    assert findings == [], (
        "a migration takes away or tightens what the previous release's servers use, "
        "which they still run on during a rolling upgrade: make it expand only (new "
        "columns nullable or with a server default, no drop or rename) and contract in a "
        "later release, or list the step in ALLOWED_CONTRACT_STEPS with why it is safe: "
        + ", ".join(map(str, findings))
    )


def test_the_allowed_contract_steps_still_exist() -> None:
    # A stale entry would silently allow the same operation in a rewritten migration.
    present = {
        (finding.revision, finding.operation)
        for revision, source in _migrations().items()
        for finding in contracting_steps(revision, source)
    }
    assert set(ALLOWED_CONTRACT_STEPS) <= present


def test_every_migration_can_be_undone() -> None:
    for revision, source in _migrations().items():
        functions = _functions(ast.parse(source))
        assert "downgrade" in functions, f"{revision}: no downgrade()"
        body = functions["downgrade"].body
        # Only ``pass``, a docstring or ``...``: a downgrade that silently does nothing.
        empty = (
            isinstance(s, ast.Pass)
            or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
            for s in body
        )
        assert not all(empty), f"{revision}: downgrade() does nothing"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def test_the_migrations_form_one_line() -> None:
    scripts = ScriptDirectory.from_config(_config())
    assert len(scripts.get_heads()) == 1, "two heads: a branch in the migrations"


def _sync_url(url: str) -> str:
    target = driver_url(url)
    if target.drivername == "sqlite+aiosqlite":
        target = target.set(drivername="sqlite")
    return target.render_as_string(hide_password=False)


def _set_revision(url: str, revision: str) -> None:
    statement = f"UPDATE {VERSION_TABLE} SET version_num = %s"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute(statement.replace("%s", "?"), (revision,))
        return
    with psycopg.connect(url) as connection:
        connection.execute(statement, (revision,))


async def _revision(url: str) -> str:
    store = await open_store(url)
    try:
        async with store.engine.connect() as connection:
            return str(await connection.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}")))
    finally:
        await store.close()


async def test_the_newest_migration_goes_down_and_up_again(store_url: str) -> None:
    """What the rolling-upgrade test starts from: a database one migration behind."""
    scripts = ScriptDirectory.from_config(_config())
    head = scripts.get_current_head()
    assert head is not None
    previous = scripts.get_revision(head).down_revision
    assert isinstance(previous, str)
    await _close_opened(store_url)  # at head (the SQLite file is not even created yet)
    engine = create_engine(_sync_url(store_url), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            command.downgrade(_config(connection), previous)
        with engine.connect() as connection:
            version = connection.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))
        assert version == previous
    finally:
        engine.dispose()
    assert await _revision(store_url) == head  # open_store migrates it up again


async def test_a_store_refuses_a_database_newer_than_its_code(store_url: str) -> None:
    await _close_opened(store_url)
    _set_revision(store_url, "9999")
    with pytest.raises(SchemaTooNew) as refused:
        await open_store(store_url)
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert str(refused.value) == (
        f"the database is at revision 9999, newer than this Belfry knows (head {head}): "
        "upgrade Belfry"
    )
    _set_revision(store_url, str(head))  # nothing else was touched: it opens again
    await _close_opened(store_url)


def test_belfry_server_refuses_a_newer_database_in_one_line(
    sqlite_url: str, tmp_path: Path
) -> None:
    asyncio.run(_close_opened(sqlite_url))
    _set_revision(sqlite_url, "9999")
    head = ScriptDirectory.from_config(_config()).get_current_head()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run(
        [BELFRY, "server", "--db", sqlite_url, "--listen", f"127.0.0.1:{port}", "--no-worker"],
        env={"BELFRY_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"belfry: the database is at revision 9999, newer than this Belfry knows "
        f"(head {head}): upgrade Belfry\n"
    )
    assert "Traceback" not in done.stdout


async def _close_opened(url: str) -> None:
    await (await open_store(url)).close()
