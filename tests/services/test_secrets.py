"""Secret env values through apply, storage and claims, on real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from belfry.adapters.store import SqlStore, open_store
from belfry.adapters.store.schema import jobs as jobs_table
from belfry.adapters.store.schema import metadata
from belfry.core.env_secrets import KeepSecret, SealedSecret
from belfry.core.jobs import JobKey, JobSpec
from belfry.core.states import RunState
from belfry.services.jobs import ApplyResult, JobService
from belfry.services.runs import RunService, WorkerIdentity
from belfry.services.secret_box import SecretBox, SecretUnreadable
from tests.services.fake_clock import FakeClock

T0 = datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)
PLAIN = "hunter2-correct-horse"
OTHER = "battery-staple-9000"
KEY = JobKey(group="ops", name="deploy")


def _spec(env: dict[str, Any], **extra: Any) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "deploy",
            "group": "ops",
            "schedule": "0 3 * * *",
            "command": "./deploy",
            "env": env,
            **extra,
        }
    )


@pytest.fixture
async def store(store_url: str) -> Any:
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(SecretBox.generate_key())


def _service(store: SqlStore, box: SecretBox | None) -> JobService:
    return JobService(store, FakeClock(T0), on_change=lambda: None, secrets=box)


async def _stored_env(store: SqlStore) -> dict[str, Any]:
    job = await store.get_job(KEY.group, KEY.name)
    assert job is not None
    return dict(job.spec.env)


async def _every_stored_text(store: SqlStore) -> str:
    """Every row of every table, as text: what someone reading the database sees."""
    rows = []
    async with store.engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in (await connection.execute(select(table))).all():
                rows.append(repr(tuple(row)))
    return "\n".join(rows)


def _database_files(store_url: str) -> bytes:
    path = Path(store_url.removeprefix("sqlite:///"))
    return b"".join(
        candidate.read_bytes()
        for candidate in (path, path.with_name(path.name + "-wal"))
        if candidate.exists()
    )


def _only_change(result: ApplyResult) -> tuple[str, dict[str, tuple[Any, Any]]]:
    (change,) = result.changes
    return change.action, change.fields


async def test_a_secret_is_stored_sealed_and_never_in_the_clear(
    store: SqlStore, store_url: str, box: SecretBox
) -> None:
    result = await _service(store, box).apply([_spec({"MODE": "x", "TOKEN": {"secret": PLAIN}})])
    assert _only_change(result) == ("create", {})

    env = await _stored_env(store)
    assert env["MODE"] == "x"
    sealed = env["TOKEN"]
    assert isinstance(sealed, SealedSecret)
    assert box.open(sealed) == PLAIN
    assert box.matches(sealed, PLAIN) and not box.matches(sealed, OTHER)

    stored = await _every_stored_text(store)
    assert PLAIN not in stored
    assert sealed.encrypted in stored  # the raw rows were read, and hold the token
    async with store.engine.connect() as connection:
        (raw,) = (await connection.execute(select(jobs_table.c.spec))).scalars().all()
    assert PLAIN not in raw and sealed.encrypted in raw
    if store_url.startswith("sqlite"):
        await store.close()
        files = _database_files(store_url)
        assert sealed.encrypted.encode() in files
        assert PLAIN.encode() not in files


async def test_reapplying_the_same_secret_changes_nothing(store: SqlStore, box: SecretBox) -> None:
    service = _service(store, box)
    await service.apply([_spec({"TOKEN": {"secret": PLAIN}})])
    sealed = (await _stored_env(store))["TOKEN"]

    result = await service.apply([_spec({"TOKEN": {"secret": PLAIN}})])
    assert _only_change(result) == ("unchanged", {})
    assert (await _stored_env(store))["TOKEN"] == sealed  # the very same token


async def test_a_new_value_shows_env_changed_without_any_value(
    store: SqlStore, box: SecretBox
) -> None:
    service = _service(store, box)
    await service.apply([_spec({"MODE": "x", "TOKEN": {"secret": PLAIN}})])
    old = (await _stored_env(store))["TOKEN"]
    assert isinstance(old, SealedSecret)

    for dry_run in (True, False):
        result = await service.apply(
            [_spec({"MODE": "x", "TOKEN": {"secret": OTHER}})], dry_run=dry_run
        )
        action, fields = _only_change(result)
        assert action == "update"
        assert fields == {
            "env": (
                {"MODE": "x", "TOKEN": {"keep": True}},
                {"MODE": "x", "TOKEN": {"secret": "***"}},
            )
        }
    shown = repr(result)
    new = (await _stored_env(store))["TOKEN"]
    assert isinstance(new, SealedSecret)
    for hidden in (PLAIN, OTHER, old.encrypted, old.digest, new.encrypted, new.digest):
        assert hidden not in shown
    assert box.open(new) == OTHER


async def test_another_field_changing_shows_the_secret_as_kept(
    store: SqlStore, box: SecretBox
) -> None:
    service = _service(store, box)
    await service.apply([_spec({"MODE": "x", "TOKEN": {"secret": PLAIN}})])
    result = await service.apply([_spec({"MODE": "y", "TOKEN": {"secret": PLAIN}})])
    _, fields = _only_change(result)
    assert fields["env"] == (
        {"MODE": "x", "TOKEN": {"keep": True}},
        {"MODE": "y", "TOKEN": {"keep": True}},
    )


async def test_keep_keeps_the_stored_secret(store: SqlStore, box: SecretBox) -> None:
    service = _service(store, box)
    await service.apply([_spec({"TOKEN": {"secret": PLAIN}})])
    sealed = (await _stored_env(store))["TOKEN"]

    assert _only_change(await service.apply([_spec({"TOKEN": {"keep": True}})])) == (
        "unchanged",
        {},
    )
    action, fields = _only_change(
        await service.apply([_spec({"TOKEN": {"keep": True}}, timeout="5m")])
    )
    assert (action, set(fields)) == ("update", {"timeout"})
    assert (await _stored_env(store))["TOKEN"] == sealed
    assert box.open(sealed) == PLAIN


async def test_keep_without_a_stored_secret_is_an_error_naming_the_field(
    store: SqlStore, box: SecretBox
) -> None:
    service = _service(store, box)
    with pytest.raises(ValueError, match=r"jobs\[ops/deploy\]\.env\.TOKEN: \{keep: true\}"):
        await service.apply([_spec({"TOKEN": {"keep": True}})])
    assert await store.get_job(KEY.group, KEY.name) is None

    await service.apply([_spec({"TOKEN": "plain, not secret"})])
    with pytest.raises(ValueError, match=r"env\.TOKEN: .*there is none"):
        await service.apply([_spec({"TOKEN": {"keep": True}})])
    assert (await _stored_env(store))["TOKEN"] == "plain, not secret"


async def test_the_stored_form_is_refused_from_users(store: SqlStore, box: SecretBox) -> None:
    sealed = box.seal(PLAIN)
    with pytest.raises(ValueError, match=r"jobs\[ops/deploy\]\.env\.TOKEN: \{encrypted, digest\}"):
        await _service(store, box).apply(
            [_spec({"TOKEN": {"encrypted": sealed.encrypted, "digest": sealed.digest}})]
        )
    assert await store.get_job(KEY.group, KEY.name) is None


async def test_a_server_without_a_key_refuses_secrets(store: SqlStore) -> None:
    with pytest.raises(ValueError, match=r"env\.TOKEN: this server has no secret key"):
        await _service(store, None).apply([_spec({"TOKEN": {"secret": PLAIN}})])
    assert await store.get_job(KEY.group, KEY.name) is None


async def test_export_shows_keep_and_applies_back_unchanged(
    store: SqlStore, box: SecretBox
) -> None:
    service = _service(store, box)
    await service.apply([_spec({"MODE": "x", "TOKEN": {"secret": PLAIN}})])
    document = (await service.get(KEY)).spec.to_document()
    assert document["env"] == {"MODE": "x", "TOKEN": {"keep": True}}
    assert PLAIN not in repr(document)

    exported = JobSpec.model_validate(document)
    assert exported.env["TOKEN"] == KeepSecret(keep=True)
    assert _only_change(await service.apply([exported])) == ("unchanged", {})


async def test_a_claimed_run_carries_the_opened_secret_to_mask(
    store: SqlStore, box: SecretBox
) -> None:
    await _service(store, box).apply([_spec({"MODE": "x", "TOKEN": {"secret": PLAIN}})])
    runs = RunService(store, FakeClock(T0), claim_lead=timedelta(0), secrets=box)
    job = await store.get_job(KEY.group, KEY.name)
    assert job is not None
    await runs.trigger(job)

    (order,) = (await runs.claim(WorkerIdentity("w1", "host1"), None)).orders
    assert order.env == {"MODE": "x", "TOKEN": PLAIN}
    assert order.secrets == (PLAIN,)
    assert order.process_environment()["TOKEN"] == PLAIN


async def test_a_secret_sealed_under_another_key_fails_the_run_instead_of_running_it(
    store: SqlStore, box: SecretBox
) -> None:
    service = _service(store, box)
    await service.apply([_spec({"TOKEN": {"secret": PLAIN}})], calendars=[])
    other_box = SecretBox(SecretBox.generate_key())
    runs = RunService(store, FakeClock(T0), claim_lead=timedelta(0), secrets=other_box)
    job = await service.get(KEY)
    (run,) = await runs.trigger(job)

    assignment = await runs.claim(WorkerIdentity("w1", "host1"), None)
    assert assignment.orders == []
    failed = await store.get_run(run.id)
    assert failed is not None and failed.state is RunState.FAILED
    assert failed.reason is not None
    assert failed.reason.startswith("could not start: env.TOKEN: the secret cannot be decrypted")
    assert PLAIN not in failed.reason
    # Only the one attempt: another key would fail a retry just the same.
    assert len(await store.list_runs(job_id=job.id)) == 1

    assert await _service(store, other_box).unreadable_secrets() == ["ops/deploy env.TOKEN"]
    assert await service.unreadable_secrets() == []


def test_a_box_opens_only_what_its_key_sealed() -> None:
    box = SecretBox(SecretBox.generate_key())
    sealed = box.seal(PLAIN)
    assert sealed.encrypted != box.seal(PLAIN).encrypted  # randomized
    assert sealed.digest == box.seal(PLAIN).digest  # but comparable
    assert PLAIN not in sealed.encrypted and PLAIN not in sealed.digest
    other = SecretBox(SecretBox.generate_key())
    with pytest.raises(SecretUnreadable):
        other.open(sealed)
    assert not other.matches(sealed, PLAIN)
    with pytest.raises(ValueError):
        SecretBox("not a key")
