"""The fast path against a brute-force walk, on random UTC cron expressions.

The walk checks every minute (every second, for 6-field expressions) of a window with a
matcher written here from the cron rules, sharing nothing with the code under test; the
instants ``next_after`` chains through the window must be exactly the ones it finds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from belfry.core.schedules import parse_schedule

FIELDS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day": (1, 31),
    "month": (1, 12),
    "weekday": (0, 7),  # 0 and 7 are both Sunday
}


@st.composite
def item(draw: st.DrawFn, field: str) -> str:
    low, high = FIELDS[field]
    a = draw(st.integers(low, high))
    b = draw(st.integers(a, high))
    step = draw(st.integers(1, max(1, high - low)))
    return draw(
        st.sampled_from(["*", str(a), f"{a}-{b}", f"*/{step}", f"{a}-{b}/{step}", f"{a}/{step}"])
    )


@st.composite
def field_text(draw: st.DrawFn, field: str) -> str:
    items = draw(st.lists(item(field), min_size=1, max_size=3))
    return "*" if "*" in items else ",".join(items)


def values(text: str, field: str) -> set[int]:
    """The numbers a field matches, read the way cron's man page says."""
    low, high = FIELDS[field]
    found: set[int] = set()
    for part in text.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = (int(n) for n in base.split("-"))
        else:
            start = int(base)
            end = high if step else start  # "a/s" runs from a to the end of the range
        found.update(range(start, end + 1, int(step) if step else 1))
    if field == "weekday" and 7 in found:
        found = (found - {7}) | {0}
    return found


def matcher(fields: list[str]):  # type: ignore[no-untyped-def]
    names = list(FIELDS)[1:] if len(fields) == 5 else list(FIELDS)
    sets = {name: values(text, name) for name, text in zip(names, fields, strict=True)}
    texts = dict(zip(names, fields, strict=True))
    seconds = sets.get("second", {0})

    def matches(instant: datetime) -> bool:
        day_ok = instant.day in sets["day"]
        weekday_ok = (instant.isoweekday() % 7) in sets["weekday"]
        # Both day fields restricted: either may match (Vixie cron); else both must.
        if texts["day"].startswith("*") or texts["weekday"].startswith("*"):
            days = day_ok and weekday_ok
        else:
            days = day_ok or weekday_ok
        return (
            instant.second in seconds
            and instant.minute in sets["minute"]
            and instant.hour in sets["hour"]
            and instant.month in sets["month"]
            and days
        )

    return matches


def chained(expression: str, start: datetime, end: datetime) -> list[datetime]:
    schedule = parse_schedule(expression)
    found = []
    cursor = start
    while (upcoming := schedule.next_after(cursor)) is not None and upcoming <= end:
        found.append(upcoming)
        cursor = upcoming
    return found


START = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=200, deadline=None)
@given(
    START,
    st.tuples(*(field_text(name) for name in ("minute", "hour", "day", "month", "weekday"))),
)
def test_five_field_expressions_agree_with_a_minute_walk(
    start: datetime, fields: tuple[str, ...]
) -> None:
    expression = " ".join(fields)
    matches = matcher(list(fields))
    end = start + timedelta(days=4)
    minute = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    walked = []
    while minute <= end:
        if matches(minute):
            walked.append(minute)
        minute += timedelta(minutes=1)
    assert chained(expression, start, end) == walked, expression


@settings(max_examples=200, deadline=None)
@given(START, st.tuples(field_text("second"), field_text("minute"), field_text("hour")))
def test_six_field_expressions_agree_with_a_second_walk(
    start: datetime, fields: tuple[str, ...]
) -> None:
    expression = " ".join([*fields, "*", "*", "*"])
    matches = matcher([*fields, "*", "*", "*"])
    end = start + timedelta(hours=2)
    second = start.replace(microsecond=0) + timedelta(seconds=1)
    walked = []
    while second <= end:
        if matches(second):
            walked.append(second)
        second += timedelta(seconds=1)
    assert chained(expression, start, end) == walked, expression
