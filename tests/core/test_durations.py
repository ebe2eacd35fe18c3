"""Human durations: parse, format, and their round trip."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from belfry.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("500ms", timedelta(milliseconds=500)),
        ("250us", timedelta(microseconds=250)),
        ("1.5h", timedelta(minutes=90)),
        ("0.5s", timedelta(milliseconds=500)),
        (" 1H 30M ", timedelta(minutes=90)),
        ("5 minutes", timedelta(minutes=5)),
        ("1 minute", timedelta(minutes=1)),
        ("1 hour 30 minutes", timedelta(minutes=90)),
        ("2 days", timedelta(days=2)),
        ("10 secs", timedelta(seconds=10)),
        ("3 hrs", timedelta(hours=3)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        (30, timedelta(seconds=30)),
        (1.5, timedelta(seconds=1.5)),
    ],
)
def test_parse(text: str | int | float, value: timedelta) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a duration"),
        ("  ", "not a duration"),
        ("abc", "not a duration"),
        ("5", "not a duration"),
        ("1h30", "not a duration"),
        ("-5m", "not a duration"),
        ("5 fortnights", "unknown unit 'fortnights'"),
        ("5x", "unknown unit 'x'"),
        ("1.2.3s", "not a duration"),
        ("0s", "must be positive"),
        ("0.0000001s", "must be positive"),
        ("9" * 30 + "d", "too long"),
        ("9" * 400 + "s", "too long"),
        (0, "positive"),
        (-3, "positive"),
        (float("nan"), "positive"),
        (float("inf"), "positive"),
        (10**30, "too long"),
        (True, "not a duration"),
    ],
)
def test_parse_errors(text: str | int | float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


def test_long_bad_input_is_shortened_in_the_message() -> None:
    with pytest.raises(ValueError) as raised:
        parse_duration("x" * 1000)
    assert len(str(raised.value)) < 200


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(seconds=90), "1m30s"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(days=2), "2d"),
        (timedelta(weeks=1), "7d"),
        (timedelta(days=1, seconds=1), "1d1s"),
        (timedelta(milliseconds=1500), "1500ms"),
        (timedelta(microseconds=1), "1us"),
        (timedelta(seconds=1, microseconds=1), "1000001us"),
        (timedelta(), "0s"),
        (-timedelta(minutes=5), "-5m"),
    ],
)
def test_format(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=100_000)))
def test_format_then_parse_is_exact(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["w", "d", "h", "m", "s", "ms"])),
        min_size=1,
        max_size=6,
    )
)
def test_parse_then_format_is_canonical(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{count}{unit}" for count, unit in parts)
    try:
        value = parse_duration(text)
    except ValueError:
        assert sum(count for count, _ in parts) == 0
        return
    canonical = format_duration(value)
    assert parse_duration(canonical) == value
    assert format_duration(parse_duration(canonical)) == canonical


@given(st.text(max_size=20))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert value > timedelta()
