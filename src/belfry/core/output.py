"""What happens to a run's output: a capped head-and-tail store, and the failure pattern.

Both work on decoded text and count UTF-8 bytes, so a stored piece never ends in the middle
of a character. Pure: the executor feeds them whatever the process wrote, as it arrives.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

__all__ = [
    "MARKER_STREAM",
    "FailureScanner",
    "OutputLimiter",
    "OutputPiece",
    "truncation_marker",
    "utf8_length",
]

# Output that Belfry itself writes into a run's log (truncation markers, executor notes).
MARKER_STREAM = "belfry"


@dataclass(frozen=True)
class OutputPiece:
    """A stretch of one stream's text, in the order it should be stored."""

    stream: str
    data: str


def utf8_length(text: str) -> int:
    """Bytes ``text`` takes as UTF-8 (lone surrogates count as the 3 bytes they would take)."""
    if text.isascii():  # the common case, and much cheaper than encoding
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _split_head(text: str, limit: int) -> tuple[str, str]:
    """``text`` split so the first part is at most ``limit`` bytes, at a character boundary."""
    if text.isascii():
        return text[:limit], text[limit:]
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return text, ""
    cut = limit
    while cut > 0 and encoded[cut] & 0xC0 == 0x80:  # back off a continuation byte
        cut -= 1
    head = encoded[:cut].decode("utf-8", "surrogatepass")
    return head, text[len(head) :]


def _keep_tail(text: str, limit: int) -> str:
    """The longest suffix of ``text`` of at most ``limit`` bytes, at a character boundary."""
    if limit <= 0:
        return ""
    if text.isascii():
        return text[-limit:]
    encoded = text.encode("utf-8", "surrogatepass")
    cut = max(0, len(encoded) - limit)
    while cut < len(encoded) and encoded[cut] & 0xC0 == 0x80:
        cut += 1
    return encoded[cut:].decode("utf-8", "surrogatepass")


def truncation_marker(omitted_bytes: int, *, newline_first: bool = True) -> str:
    """The line stored where output was dropped."""
    lead = "\n" if newline_first else ""
    return f"{lead}[... {omitted_bytes:,} bytes of output omitted ...]\n"


class _Kept:
    """A piece of the tail, trimmed in place when the tail overflows."""

    __slots__ = ("size", "stream", "text")

    def __init__(self, stream: str, text: str, size: int) -> None:
        self.stream = stream
        self.text = text
        self.size = size


class OutputLimiter:
    """Keeps the first ``head_bytes`` and the last ``tail_bytes`` of a run's output.

    Output of at most ``head_bytes + tail_bytes`` is kept whole; more is cut without
    splitting a character (head room a split character leaves unused goes to the tail).
    ``feed`` returns what may be stored at once (while the head is not full); past the head,
    only the newest ``tail_bytes`` are kept in memory, and ``finish`` returns the truncation
    marker (only if something was dropped) followed by that tail. The budget is shared by
    all streams, and pieces keep their stream and order.
    """

    def __init__(self, head_bytes: int, tail_bytes: int) -> None:
        if head_bytes < 0 or tail_bytes < 0:
            raise ValueError("head_bytes and tail_bytes must not be negative")
        self._head_room = head_bytes
        self._tail_limit = tail_bytes
        self._total = 0
        self._tail: deque[_Kept] = deque()
        self._tail_bytes = 0
        self._dropped = 0
        self._head_ends_line = True
        self._finished = False

    @property
    def total_bytes(self) -> int:
        """Bytes fed so far, stored or not."""
        return self._total

    @property
    def omitted_bytes(self) -> int:
        """Bytes dropped so far (final once ``finish`` has been called)."""
        return self._dropped

    def feed(self, stream: str, data: str) -> list[OutputPiece]:
        """Take ``data`` written to ``stream``; return the part to store now."""
        if self._finished:
            raise RuntimeError("OutputLimiter.feed after finish")
        if not data:
            return []
        size = utf8_length(data)
        self._total += size
        if size <= self._head_room:
            self._head_room -= size
            self._head_ends_line = data.endswith("\n")
            return [OutputPiece(stream, data)]
        out: list[OutputPiece] = []
        if self._head_room > 0:
            head, data = _split_head(data, self._head_room)
            if head:
                head_size = utf8_length(head)
                self._head_room -= head_size
                size -= head_size
                self._head_ends_line = head.endswith("\n")
                out.append(OutputPiece(stream, head))
            # The character that did not fit goes to the tail, and so does the room it left
            # unused: output of at most head + tail bytes is then always kept whole.
            self._tail_limit += self._head_room
            self._head_room = 0
        self._keep(stream, data, size)
        return out

    def _keep(self, stream: str, data: str, size: int) -> None:
        if size > self._tail_limit:
            # This piece alone fills the tail: everything older is dropped, and so is the
            # start of this piece (even a character that would fit in what room is left).
            self._dropped += self._tail_bytes
            self._tail.clear()
            self._tail_bytes = 0
            kept = _keep_tail(data, self._tail_limit)
            kept_size = utf8_length(kept)
            self._dropped += size - kept_size
            data, size = kept, kept_size
        if size:
            self._tail.append(_Kept(stream, data, size))
            self._tail_bytes += size
        # Drop or trim the oldest pieces until the tail fits again.
        while self._tail_bytes > self._tail_limit:
            oldest = self._tail[0]
            excess = self._tail_bytes - self._tail_limit
            if oldest.size <= excess:
                self._tail.popleft()
                self._tail_bytes -= oldest.size
                self._dropped += oldest.size
                continue
            trimmed = _keep_tail(oldest.text, oldest.size - excess)
            trimmed_size = utf8_length(trimmed)
            self._tail_bytes -= oldest.size - trimmed_size
            self._dropped += oldest.size - trimmed_size
            if trimmed:
                oldest.text, oldest.size = trimmed, trimmed_size
            else:
                self._tail.popleft()

    def finish(self) -> list[OutputPiece]:
        """The end of the output: a marker if anything was dropped, then the kept tail.

        Adjacent tail pieces of the same stream are merged. Call once.
        """
        self._finished = True
        out: list[OutputPiece] = []
        if self._dropped:
            marker = truncation_marker(self._dropped, newline_first=not self._head_ends_line)
            out.append(OutputPiece(MARKER_STREAM, marker))
        merged: list[list[str]] = []
        for kept in self._tail:
            if merged and merged[-1][0] == kept.stream:
                merged[-1][1] += kept.text
            else:
                merged.append([kept.stream, kept.text])
        out.extend(OutputPiece(stream, text) for stream, text in merged if text)
        self._tail.clear()
        self._tail_bytes = 0
        return out


# A long line is scanned in windows of this many characters; each window after the first
# starts with the last _OVERLAP characters of the previous one, so a match that straddles
# windows (up to that length) is still found.
_OVERLAP = 1024
# Prepended to a continuation window and skipped by ``search(pos=1)``, so that ``^`` does
# not match in the middle of a long line.
_SENTINEL = "\x00"


class FailureScanner:
    """Finds the first output line matching a job's ``failure_pattern``.

    Fed everything the process writes (including what the limiter drops), per stream, in
    pieces that may split lines anywhere. The regex is searched in each line without its
    line ending. A line longer than ``max_line_chars`` is scanned in overlapping windows
    of that size, so memory stays bounded.
    """

    def __init__(self, pattern: str | None, *, max_line_chars: int = 64 * 1024) -> None:
        try:
            self._regex = re.compile(pattern) if pattern else None
        except re.error as error:
            raise ValueError(f"invalid failure_pattern {pattern!r}: {error}") from error
        self._max_line = max(max_line_chars, 2 * _OVERLAP)
        # Per stream: the partial last line, and whether it continues a longer line.
        self._partial: dict[str, str] = {}
        self._continued: dict[str, bool] = {}
        self._matched: str | None = None

    @property
    def matched(self) -> str | None:
        """The first matching line, once found."""
        return self._matched

    @property
    def active(self) -> bool:
        """Whether output still needs scanning (there is a pattern, not yet matched)."""
        return self._regex is not None and self._matched is None

    def feed(self, data: str, stream: str = "stdout") -> str | None:
        """Scan ``data`` written to ``stream``; return the first matching line, if found."""
        if self._regex is None or self._matched is not None or not data:
            return self._matched
        partial = self._partial.get(stream, "") + data
        if "\n" in partial:
            *lines, partial = partial.split("\n")
            for line in lines:
                if self._search(line, self._continued.get(stream, False)):
                    return self._matched
                self._continued[stream] = False
        if len(partial) > self._max_line:
            if self._search(partial, self._continued.get(stream, False)):
                return self._matched
            partial = partial[-_OVERLAP:]
            self._continued[stream] = True
        self._partial[stream] = partial
        return None

    def finish(self) -> str | None:
        """Scan the unterminated last line of each stream; return the first match, if any."""
        if self._regex is not None and self._matched is None:
            for stream, partial in self._partial.items():
                if partial and self._search(partial, self._continued.get(stream, False)):
                    break
        self._partial.clear()
        self._continued.clear()
        return self._matched

    def _search(self, line: str, continued: bool) -> bool:
        assert self._regex is not None
        line = line.removesuffix("\r")
        if continued:
            found = self._regex.search(_SENTINEL + line, 1) is not None
        else:
            found = self._regex.search(line) is not None
        if found:
            self._matched = line
        return found
