"""OutputLimiter and FailureScanner: pure, so examples plus hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from belfry.core.output import (
    MARKER_STREAM,
    FailureScanner,
    OutputLimiter,
    OutputPiece,
    truncation_marker,
    utf8_length,
)

STREAMS = st.sampled_from(["stdout", "stderr"])
# Mixed widths on purpose: 1-byte ASCII, 2-byte é, 3-byte €, 4-byte emoji.
TEXT = st.text(alphabet=st.sampled_from("ab\n é€😀"), max_size=40) | st.text(max_size=40)
FEEDS = st.lists(st.tuples(STREAMS, TEXT), max_size=30)
LIMITS = st.integers(min_value=0, max_value=120)


def run_limiter(
    head: int, tail: int, feeds: list[tuple[str, str]]
) -> tuple[list[OutputPiece], list[OutputPiece], OutputLimiter]:
    limiter = OutputLimiter(head, tail)
    early: list[OutputPiece] = []
    for stream, data in feeds:
        early.extend(limiter.feed(stream, data))
    return early, limiter.finish(), limiter


def per_stream(pieces: list[OutputPiece] | list[tuple[str, str]]) -> dict[str, str]:
    joined: dict[str, str] = {}
    for piece in pieces:
        stream, data = (piece.stream, piece.data) if isinstance(piece, OutputPiece) else piece
        joined[stream] = joined.get(stream, "") + data
    return {stream: data for stream, data in joined.items() if data}


@given(head=LIMITS, tail=LIMITS, feeds=FEEDS)
def test_limiter_keeps_everything_when_under_the_limit(
    head: int, tail: int, feeds: list[tuple[str, str]]
) -> None:
    total = sum(utf8_length(data) for _, data in feeds)
    early, final, limiter = run_limiter(head, tail, feeds)
    assert limiter.total_bytes == total
    if total <= head + tail:
        pieces = early + final
        assert all(piece.stream != MARKER_STREAM for piece in pieces)
        assert "".join(p.data for p in pieces) == "".join(data for _, data in feeds)
        assert per_stream(pieces) == per_stream(feeds)
        assert limiter.omitted_bytes == 0


@given(head=LIMITS, tail=LIMITS, feeds=FEEDS)
def test_limiter_never_stores_more_than_head_tail_and_marker(
    head: int, tail: int, feeds: list[tuple[str, str]]
) -> None:
    original = "".join(data for _, data in feeds)
    early, final, limiter = run_limiter(head, tail, feeds)
    markers = [p for p in final if p.stream == MARKER_STREAM]
    tail_pieces = [p for p in final if p.stream != MARKER_STREAM]
    stored_head = "".join(p.data for p in early)
    stored_tail = "".join(p.data for p in tail_pieces)

    assert utf8_length(stored_head) <= head
    # The tail may use head room left by a character that did not fit the head.
    assert utf8_length(stored_head) + utf8_length(stored_tail) <= head + tail
    marker_bytes = sum(utf8_length(p.data) for p in markers)
    assert marker_bytes <= utf8_length(truncation_marker(limiter.total_bytes))
    # The head is the start of the output, the tail its end; what is missing is counted.
    assert original.startswith(stored_head)
    assert original.endswith(stored_tail)
    omitted = limiter.total_bytes - utf8_length(stored_head) - utf8_length(stored_tail)
    assert limiter.omitted_bytes == omitted
    if omitted:
        assert len(markers) == 1 and final[0] is markers[0]
        assert f"{omitted:,} bytes of output omitted" in markers[0].data
        # Only a character that straddles a boundary may cost the head or tail any room.
        assert utf8_length(stored_head) > head - 4
        assert utf8_length(stored_tail) > tail - 4
    else:
        assert not markers


def test_limiter_head_marker_tail_example() -> None:
    limiter = OutputLimiter(head_bytes=10, tail_bytes=5)
    assert limiter.feed("stdout", "0123456789abc\n") == [OutputPiece("stdout", "0123456789")]
    assert limiter.feed("stderr", "xyz\n") == []
    assert limiter.feed("stdout", "end\n") == []
    assert limiter.finish() == [
        OutputPiece(MARKER_STREAM, "\n[... 7 bytes of output omitted ...]\n"),
        OutputPiece("stderr", "\n"),
        OutputPiece("stdout", "end\n"),
    ]
    assert limiter.total_bytes == 22
    assert limiter.omitted_bytes == 7


def test_limiter_never_splits_a_character() -> None:
    limiter = OutputLimiter(head_bytes=3, tail_bytes=3)
    # "€" is 3 bytes: the head fits "a" only, since "a€" would be 4; the 2 bytes of head
    # room left unused go to the tail, which then holds "b€" (4 bytes), not just "€".
    assert limiter.feed("stdout", "a€b€") == [OutputPiece("stdout", "a")]
    final = limiter.finish()
    assert final[-1] == OutputPiece("stdout", "b€")
    assert "3 bytes of output omitted" in final[0].data  # the first "€"


def test_limiter_groups_large_numbers_in_the_marker() -> None:
    limiter = OutputLimiter(head_bytes=0, tail_bytes=0)
    limiter.feed("stdout", "x" * 1_234_567)
    assert limiter.finish() == [
        OutputPiece(MARKER_STREAM, "[... 1,234,567 bytes of output omitted ...]\n")
    ]


def test_limiter_rejects_negative_budgets() -> None:
    with pytest.raises(ValueError):
        OutputLimiter(-1, 10)


def test_scanner_finds_the_first_matching_line_across_pieces() -> None:
    scanner = FailureScanner(r"ERROR|Traceback")
    assert scanner.feed("all fine\nstill fi") is None
    assert scanner.feed("ne\nsome ERR") is None
    assert scanner.feed("OR: disk full\nERROR again\n") == "some ERROR: disk full"
    assert scanner.matched == "some ERROR: disk full"
    assert not scanner.active
    assert scanner.finish() == "some ERROR: disk full"


def test_scanner_checks_the_unterminated_last_line_at_finish() -> None:
    scanner = FailureScanner(r"^FAILED$")
    assert scanner.feed("ok\r\nFAILED") is None
    assert scanner.finish() == "FAILED"


def test_scanner_keeps_partial_lines_per_stream() -> None:
    scanner = FailureScanner(r"^ERROR$")
    scanner.feed("ERR", "stdout")
    scanner.feed("noise\n", "stderr")  # must not glue onto stdout's partial line
    assert scanner.matched is None
    assert scanner.feed("OR\n", "stdout") == "ERROR"


def test_scanner_without_pattern_never_matches() -> None:
    scanner = FailureScanner(None)
    assert not scanner.active
    assert scanner.feed("ERROR\n") is None
    assert scanner.finish() is None


def test_scanner_rejects_a_bad_pattern() -> None:
    with pytest.raises(ValueError, match="failure_pattern"):
        FailureScanner("(unclosed")


def test_scanner_bounds_a_long_line_but_still_finds_a_match_in_it() -> None:
    scanner = FailureScanner(r"NEEDLE", max_line_chars=4096)
    for _ in range(100):
        scanner.feed("x" * 1000)
    scanner.feed("NEE")
    scanner.feed("DLE" + "y" * 10_000)
    assert scanner.matched is not None
    assert "NEEDLE" in scanner.matched
    assert len(scanner.matched) <= 4096 + 11_000


def test_scanner_does_not_anchor_in_the_middle_of_a_long_line() -> None:
    scanner = FailureScanner(r"^x", max_line_chars=4096)
    scanner.feed("y" + "x" * 100_000)
    assert scanner.finish() is None
    assert scanner.feed("\nx\n") == "x"


@given(
    lines=st.lists(st.text(alphabet="abE\r", max_size=8), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=10),
)
def test_scanner_matches_like_a_line_by_line_search(lines: list[str], cuts: list[int]) -> None:
    text = "\n".join(lines)
    expected = next((line.removesuffix("\r") for line in lines if "EE" in line), None)
    scanner = FailureScanner("EE")
    start = 0
    for cut in sorted(c for c in cuts if c <= len(text)):
        scanner.feed(text[start:cut])
        start = cut
    scanner.feed(text[start:])
    assert scanner.finish() == expected
