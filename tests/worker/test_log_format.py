"""The log formatters of ``--log-format``: what each line holds, tracebacks included."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from belfry.worker.log_format import JsonFormatter, TextFormatter, extra_fields


def _record(
    message: str = "run %d of %s started",
    args: tuple[object, ...] = (7, "a/b"),
    **extra: object,
) -> logging.LogRecord:
    logger = logging.getLogger("belfry.services.runs")
    record = logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, message, args, None, extra=extra
    )
    record.created = datetime(2027, 3, 1, 12, 0, 0, 123456, tzinfo=UTC).timestamp()
    return record


def _failed() -> logging.LogRecord:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = _record("executor failed", (), job="a/b", run_id=7)
        record.exc_info = sys.exc_info()
        return record


def test_json_is_one_object_with_the_fields_and_the_extras() -> None:
    line = JsonFormatter().format(_record(job="a/b", run_id=7, path=Path("/tmp/x")))
    assert json.loads(line) == {
        "time": "2027-03-01T12:00:00.123Z",
        "level": "INFO",
        "logger": "belfry.services.runs",
        "message": "run 7 of a/b started",
        "job": "a/b",
        "run_id": 7,
        "path": "/tmp/x",  # no JSON type: as text
    }


def test_json_keeps_a_traceback_in_its_line_and_its_own_fields_first() -> None:
    line = JsonFormatter().format(_failed())
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "executor failed"
    assert entry["exception"].startswith("Traceback")
    assert "RuntimeError: boom\nsecond line" in entry["exception"]
    clash = json.loads(JsonFormatter().format(_record(level="mine", logger="mine")))
    assert (clash["level"], clash["logger"]) == ("INFO", "belfry.services.runs")


def test_text_appends_the_extras_before_any_traceback() -> None:
    plain = TextFormatter().format(_record())
    assert plain.endswith(" INFO belfry.services.runs: run 7 of a/b started")
    tagged = TextFormatter().format(_record(job="a/b", run_id=7, reason="not here"))
    assert tagged.endswith(': run 7 of a/b started job=a/b run_id=7 reason="not here"')
    first, *rest = TextFormatter().format(_failed()).splitlines()
    assert first.endswith("executor failed job=a/b run_id=7")
    assert rest[0].startswith("Traceback")


def test_only_what_the_call_passed_counts_as_extra() -> None:
    assert extra_fields(_record()) == {}
    assert extra_fields(_record(job="a/b", run_id=7)) == {"job": "a/b", "run_id": 7}
    # uvicorn adds a coloured copy of its messages: not a field.
    assert extra_fields(_record(color_message="\x1b[32mstarted\x1b[0m")) == {}
