"""``belfry explain``'s pure core: words, next instants, INTERFACE.md's JSON shape."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from belfry.core.explanations import Explanation, Occurrence, explain, format_local
from belfry.core.schedules import ScheduleError

AFTER = datetime(2027, 1, 1, tzinfo=UTC)
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def test_explain_cron() -> None:
    explanation = explain("30 2 * * *", "Europe/Berlin", after=AFTER, count=3)
    instants = [
        datetime(2027, 1, 1, 1, 30, tzinfo=UTC),
        datetime(2027, 1, 2, 1, 30, tzinfo=UTC),
        datetime(2027, 1, 3, 1, 30, tzinfo=UTC),
    ]
    assert explanation == Explanation(
        schedule="30 2 * * *",
        timezone="Europe/Berlin",
        description="At 02:30 every day (Europe/Berlin)",
        instants=instants,
        occurrences=[Occurrence("runs", instant, instant) for instant in instants],
    )
    assert not explanation.marked
    assert explanation.to_json() == {
        "schedule": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "description": "At 02:30 every day (Europe/Berlin)",
        "next": ["2027-01-01T01:30:00Z", "2027-01-02T01:30:00Z", "2027-01-03T01:30:00Z"],
        "occurrences": [
            {
                "status": "runs",
                "scheduled_for": instant,
                "runs_at": instant,
                "local": f"{instant[:10]} 02:30:00 +01:00 (CET)",
                "note": "",
            }
            for instant in ("2027-01-01T01:30:00Z", "2027-01-02T01:30:00Z", "2027-01-03T01:30:00Z")
        ],
    }
    assert explanation.local_times() == [
        "2027-01-01 02:30:00 +01:00 (CET)",
        "2027-01-02 02:30:00 +01:00 (CET)",
        "2027-01-03 02:30:00 +01:00 (CET)",
    ]


def test_default_zone_and_count() -> None:
    explanation = explain("@hourly", after=AFTER)
    assert explanation.timezone == "UTC"
    assert explanation.description == "At the start of every hour (UTC)"
    assert len(explanation.instants) == 5
    assert explanation.local_times()[0] == "2027-01-01 01:00:00 +00:00"


def test_nicer_words_for_intervals() -> None:
    explanation = explain("every 90s", after=AFTER, count=2)
    assert explanation.description == "Every 90 seconds"
    assert explanation.to_json()["next"] == ["2027-01-01T00:01:30Z", "2027-01-01T00:03:00Z"]
    assert explain("rate(5 minutes)", after=AFTER).description == "Every 5 minutes"
    assert explain("*/15 * * * *", after=AFTER).description == "Every 15 minutes (UTC)"


def test_a_schedule_that_ends_lists_fewer_instants() -> None:
    explanation = explain("at 2027-06-01T10:00:00Z", "Europe/Berlin", after=AFTER, count=5)
    assert explanation.to_json() == {
        "schedule": "at 2027-06-01T10:00:00Z",
        "timezone": "Europe/Berlin",
        "description": "Once, at 2027-06-01T10:00:00Z",
        "next": ["2027-06-01T10:00:00Z"],
        "occurrences": [
            {
                "status": "runs",
                "scheduled_for": "2027-06-01T10:00:00Z",
                "runs_at": "2027-06-01T10:00:00Z",
                "local": "2027-06-01 12:00:00 +02:00 (CEST)",
                "note": "",
            }
        ],
    }
    assert explanation.local_times() == ["2027-06-01 12:00:00 +02:00 (CEST)"]
    assert explain("at 2026-06-01T10:00:00Z", after=AFTER).instants == []


def test_dst_shows_in_local_times() -> None:
    explanation = explain(
        "30 2 * * *", "Europe/Berlin", after=datetime(2026, 3, 28, 12, tzinfo=UTC), count=2
    )
    assert explanation.local_times() == [
        "2026-03-29 03:00:00 +02:00 (CEST)",
        "2026-03-30 02:30:00 +02:00 (CEST)",
    ]
    assert explanation.to_json()["next"] == ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]


def test_zones_without_abbreviations_show_only_the_offset() -> None:
    explanation = explain("0 0 * * *", "America/Sao_Paulo", after=AFTER, count=1)
    assert explanation.local_times() == ["2027-01-01 00:00:00 -03:00"]
    assert format_local(AFTER, "Asia/Kolkata") == "2027-01-01 05:30:00 +05:30 (IST)"
    assert format_local(AFTER + timedelta(microseconds=5), "UTC") == (
        "2027-01-01 00:00:00.000005 +00:00"
    )


def test_naive_after_is_a_wall_time_of_the_zone() -> None:
    explanation = explain("0 * * * *", "Europe/Berlin", after=datetime(2027, 1, 1, 10, 30), count=1)
    assert explanation.instants == [datetime(2027, 1, 1, 10, tzinfo=UTC)]  # 11:00 CET


def test_after_in_another_zone_is_converted() -> None:
    after = datetime(2027, 1, 1, 10, 30, tzinfo=ZoneInfo("America/New_York"))
    explanation = explain("0 * * * *", after=after, count=1)
    assert explanation.instants == [datetime(2027, 1, 1, 16, tzinfo=UTC)]


def test_count_zero_and_negative() -> None:
    assert explain("@daily", after=AFTER, count=0).instants == []
    with pytest.raises(ValueError, match="count"):
        explain("@daily", after=AFTER, count=-1)


def test_errors() -> None:
    with pytest.raises(ScheduleError, match="bad minute field '61'"):
        explain("61 * * * *", after=AFTER)
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Base'"):
        explain("@daily", "Mars/Base", after=AFTER)
    with pytest.raises(ScheduleError, match="@reboot"):
        explain("@reboot", after=AFTER)
    with pytest.raises(ScheduleError):
        format_local(AFTER, "Mars/Base")
    with pytest.raises(ValueError, match="naive"):
        format_local(datetime(2027, 1, 1), "UTC")


def test_explanations_are_frozen() -> None:
    explanation = explain("@daily", after=AFTER)
    with pytest.raises(AttributeError):
        explanation.description = "changed"  # type: ignore[misc]


@settings(max_examples=60, deadline=None)
@given(
    expression=st.sampled_from(
        ["30 2 * * *", "*/15 * * * *", "every 90s", "rate(1 hour)", "0 0 L * *", "*/10 * * * * *"]
    ),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"]),
    after=st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC)),
    count=st.integers(0, 12),
)
def test_json_shape(expression: str, zone: str, after: datetime, count: int) -> None:
    explanation = explain(expression, zone, after=after, count=count)
    document = json.loads(json.dumps(explanation.to_json()))
    assert list(document) == ["schedule", "timezone", "description", "next", "occurrences"]
    assert document["schedule"] == expression
    assert document["timezone"] == zone
    assert document["description"]
    assert len(document["next"]) == count
    assert all(RFC3339_UTC.fullmatch(text) for text in document["next"])
    parsed = [datetime.fromisoformat(text.replace("Z", "+00:00")) for text in document["next"]]
    assert parsed == explanation.instants
    assert all(a < b for a, b in zip([after, *parsed], parsed, strict=False))
    assert len(explanation.local_times()) == count
