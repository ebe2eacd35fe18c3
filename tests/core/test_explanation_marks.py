"""``explain`` marks the occurrences DST moves, repeats or drops and calendars skip or defer."""

from __future__ import annotations

from datetime import UTC, datetime

from belfry.core.calendars import CalendarGate, CalendarSpec, compile_calendars
from belfry.core.explanations import explain, explain_schedule
from belfry.core.schedules import DstRules, parse_schedule


def statuses(explanation: object) -> list[tuple[str, str, str]]:
    document = explanation.to_json()  # type: ignore[attr-defined]
    return [(item["status"], item["local"], item["note"]) for item in document["occurrences"]]


def test_repeated_hour_runs_once_and_the_second_pass_is_marked_dropped() -> None:
    explanation = explain(
        "30 2 * * *", "Europe/Berlin", after=datetime(2027, 10, 30, 12, tzinfo=UTC), count=2
    )
    assert [status for status, _, _ in statuses(explanation)] == ["runs", "dropped", "runs"]
    _, local, note = statuses(explanation)[1]
    assert local == "2027-10-31 02:30:00 +01:00 (CET)"
    assert "twice" in note
    # The dropped pass is not a run: next lists only the two runs.
    assert explanation.instants == [
        datetime(2027, 10, 31, 0, 30, tzinfo=UTC),
        datetime(2027, 11, 1, 1, 30, tzinfo=UTC),
    ]


def test_gap_skip_lists_the_wall_time_that_does_not_happen() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin", dst=DstRules(gap="skip"))
    explanation = explain_schedule(schedule, after=datetime(2027, 3, 27, 12, tzinfo=UTC), count=1)
    assert statuses(explanation)[0][:2] == (
        "dropped",
        "2027-03-28 02:30:00 (does not exist: DST gap)",
    )
    assert explanation.instants == [datetime(2027, 3, 29, 0, 30, tzinfo=UTC)]
    document = explanation.to_json()
    assert document["occurrences"][0]["scheduled_for"] is None


def test_repeat_both_marks_the_second_run() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin", dst=DstRules(repeat="both"))
    explanation = explain_schedule(schedule, after=datetime(2027, 10, 30, 12, tzinfo=UTC), count=2)
    assert [status for status, _, _ in statuses(explanation)] == ["runs", "repeated"]
    assert explanation.instants == [
        datetime(2027, 10, 31, 0, 30, tzinfo=UTC),
        datetime(2027, 10, 31, 1, 30, tzinfo=UTC),
    ]


def _gate(defer: bool) -> CalendarGate:
    calendars = compile_calendars(
        [
            CalendarSpec.model_validate(
                {"name": "holidays", "timezone": "Europe/Berlin", "dates": ["2027-12-24"]}
            ),
            CalendarSpec.model_validate(
                {
                    "name": "office",
                    "timezone": "Europe/Berlin",
                    "weekly": [{"days": "MON-FRI", "from": "10:00", "to": "18:00"}],
                }
            ),
        ]
    )
    return CalendarGate([calendars["holidays"]], [calendars["office"]], defer=defer)


def test_calendar_skips_are_marked_and_next_lists_only_runs() -> None:
    schedule = parse_schedule("0 12 * * *", "Europe/Berlin")
    # Thu 23 Dec runs, Fri 24 is a holiday, Sat 25 and Sun 26 are outside the office.
    explanation = explain_schedule(
        schedule, after=datetime(2027, 12, 23, tzinfo=UTC), count=2, gate=_gate(defer=False)
    )
    assert [(status, note) for status, _, note in statuses(explanation)] == [
        ("runs", ""),
        ("skipped", "calendar:holidays"),
        ("skipped", "calendar:office"),
        ("skipped", "calendar:office"),
        ("runs", ""),
    ]
    assert explanation.instants == [
        datetime(2027, 12, 23, 11, tzinfo=UTC),
        datetime(2027, 12, 27, 11, tzinfo=UTC),
    ]


def test_calendar_deferrals_say_when_the_run_starts() -> None:
    schedule = parse_schedule("0 7 * * *", "Europe/Berlin")
    explanation = explain_schedule(
        schedule, after=datetime(2027, 12, 22, tzinfo=UTC), count=2, gate=_gate(defer=True)
    )
    rows = statuses(explanation)
    assert rows[0] == (
        "deferred",
        "2027-12-22 07:00:00 +01:00 (CET)",
        "calendar:office: deferred to 2027-12-22T09:00:00Z",
    )
    assert explanation.instants == [
        datetime(2027, 12, 22, 9, tzinfo=UTC),
        datetime(2027, 12, 23, 9, tzinfo=UTC),
    ]
    assert explanation.to_json()["occurrences"][0]["runs_at"] == "2027-12-22T09:00:00Z"


def test_an_always_closed_gate_stops_after_a_bounded_walk() -> None:
    closed = compile_calendars(
        [CalendarSpec.model_validate({"name": "always", "weekly": [{"days": "MON-SUN"}]})]
    )
    gate = CalendarGate([closed["always"]], [], defer=False)
    schedule = parse_schedule("0 * * * *")
    explanation = explain_schedule(
        schedule, after=datetime(2027, 1, 1, tzinfo=UTC), count=3, gate=gate
    )
    assert explanation.instants == []
    assert explanation.occurrences
    assert {item.status for item in explanation.occurrences} == {"skipped"}
