"""Secret env values in the job spec: the forms users write, what is shown, what is hidden."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from belfry.core.env_secrets import (
    KeepSecret,
    SealedSecret,
    SecretInput,
    redacted_env,
    secret_input_problems,
)
from belfry.core.execution import RunOrder
from belfry.core.jobs import JobSpec
from belfry.core.protocol import ClaimReply

PLAIN = "s3cr3t-value-42"


def _job(env: dict[str, Any]) -> JobSpec:
    return JobSpec.model_validate(
        {"name": "a", "schedule": "every 1m", "command": "true", "env": env}
    )


def _errors(env: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        _job(env)
    return [(tuple(error["loc"]), error["msg"]) for error in caught.value.errors()]


def test_each_form_parses_to_its_own_type() -> None:
    spec = _job(
        {
            "PLAIN": "text",
            "NEW": {"secret": PLAIN},
            "KEPT": {"keep": True},
            "STORED": {"encrypted": "token", "digest": "abc"},
        }
    )
    assert spec.env["PLAIN"] == "text"
    assert spec.env["NEW"] == SecretInput(secret=PLAIN)
    assert spec.env["KEPT"] == KeepSecret(keep=True)
    assert spec.env["STORED"] == SealedSecret(encrypted="token", digest="abc")


def test_a_secret_is_used_exactly_as_given() -> None:
    # Plain strings of the spec are stripped; a secret's spaces may be part of it.
    spec = _job({"PLAIN": "  text  ", "NEW": {"secret": f"  {PLAIN}  "}})
    assert spec.env["PLAIN"] == "text"
    assert spec.env["NEW"] == SecretInput(secret=f"  {PLAIN}  ")


def test_the_json_form_round_trips_every_form() -> None:
    """What the CLI sends and the store keeps: each form as written."""
    spec = _job(
        {
            "A": "x",
            "B": {"secret": PLAIN},
            "C": {"keep": True},
            "D": {"encrypted": "t", "digest": "d"},
        }
    )
    dumped = spec.model_dump(mode="json")["env"]
    assert dumped == {
        "A": "x",
        "B": {"secret": PLAIN},
        "C": {"keep": True},
        "D": {"encrypted": "t", "digest": "d"},
    }
    assert JobSpec.model_validate_json(spec.model_dump_json()) == spec


def test_the_document_shows_every_secret_as_keep() -> None:
    spec = _job(
        {
            "A": "x",
            "B": {"secret": PLAIN},
            "C": {"keep": True},
            "D": {"encrypted": "t", "digest": "d"},
        }
    )
    document = spec.to_document()
    keep = {"keep": True}
    assert document["env"] == {"A": "x", "B": keep, "C": keep, "D": keep}
    assert PLAIN not in str(document)
    assert "'t'" not in str(document["env"]) and "'d'" not in str(document["env"])
    # What export writes applies back: {keep: true} is a valid value.
    assert _job(document["env"]).env["B"] == KeepSecret(keep=True)


def test_a_job_without_secrets_has_the_same_document_as_before() -> None:
    assert "env" not in _job({}).to_document()
    assert _job({"A": "x"}).to_document()["env"] == {"A": "x"}


def test_reprs_never_show_a_secret() -> None:
    spec = _job({"B": {"secret": PLAIN}, "D": {"encrypted": "tok-xyz", "digest": "dig-xyz"}})
    for shown in (repr(spec), str(spec), repr(spec.env)):
        assert PLAIN not in shown
        assert "tok-xyz" not in shown and "dig-xyz" not in shown
    order = RunOrder(
        run_id=1,
        job="g/a",
        scheduled_for=datetime(2027, 1, 1, tzinfo=UTC),
        attempt=1,
        command="true",
        start_at=datetime(2027, 1, 1, tzinfo=UTC),
        env={"B": PLAIN},
        secrets=(PLAIN,),
    )
    assert PLAIN not in repr(order)
    assert order.process_environment()["B"] == PLAIN


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"secret": 12345678}, "a secret must be a string (quote it in YAML)"),
        ({"secret": ["12345678"]}, "a secret must be a string (quote it in YAML)"),
        ({"secret": "12345678\ud800"}, "a secret must be Unicode text"),
        ({"keep": False}, "'keep' must be true"),
        ({"keep": "yes"}, "'keep' must be true"),
        ({"secret": "12345678", "keep": True}, "got a mapping with the keys 'keep', 'secret'"),
        ({"encrypted": "12345678"}, "got a mapping with the keys 'encrypted'"),
        ({}, "got a mapping with the keys none"),
    ],
)
def test_bad_secret_forms_name_the_variable_and_never_quote_the_value(
    value: dict[str, Any], message: str
) -> None:
    ((loc, text),) = _errors({"TOKEN": value})
    assert loc == ("env", "TOKEN")
    assert message in text
    assert "12345678" not in text


def test_a_number_is_not_a_string_as_before() -> None:
    with pytest.raises(ValidationError) as caught:
        _job({"PORT": 8080})
    (error,) = caught.value.errors()
    assert (tuple(error["loc"]), error["type"]) == (("env", "PORT"), "string_type")


def test_variable_names_are_still_checked_with_secrets() -> None:
    ((loc, text),) = _errors({"NOT VALID": {"secret": PLAIN}})
    assert loc == ("env",)
    assert "'NOT VALID' is not a valid environment variable name" in text


def test_the_stored_form_is_a_problem_when_users_give_it() -> None:
    spec = _job({"A": "x", "B": {"keep": True}, "D": {"encrypted": "t", "digest": "d"}})
    ((name, message),) = secret_input_problems(spec.env)
    assert name == "D"
    assert "{secret: VALUE}" in message
    assert secret_input_problems(_job({"A": "x", "B": {"secret": PLAIN}}).env) == []


def test_redacted_env_keeps_plain_values() -> None:
    env = _job({"A": "x", "B": {"secret": PLAIN}}).env
    assert redacted_env(env) == {"A": "x", "B": {"keep": True}}


def test_an_order_crosses_the_worker_protocol_with_its_secrets_to_mask() -> None:
    order = RunOrder(
        run_id=1,
        job="g/a",
        scheduled_for=datetime(2027, 1, 1, tzinfo=UTC),
        attempt=1,
        command="true",
        start_at=datetime(2027, 1, 1, tzinfo=UTC),
        env={"B": PLAIN},
        secrets=(PLAIN,),
    )
    (received,) = ClaimReply.model_validate_json(
        ClaimReply(orders=[order]).model_dump_json()
    ).orders
    assert received.env == {"B": PLAIN}
    assert received.secrets == (PLAIN,)
