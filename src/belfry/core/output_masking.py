"""Masking a job's secret values in its output, as the output streams in.

A command may print a secret in two writes (``printf 'abc'; sleep 1; printf 'def'``), so the
masker holds back the end of what it has seen while that end could still become a secret:
at most the length of the longest secret less one character, and only as long as it is the
start of one. Everything before that is final and passed on at once.

Secrets shorter than ``MIN_MASKED_LENGTH`` are not masked: a value such as ``1`` or ``yes``
would turn half of every log into ``***`` while hiding nothing worth hiding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MASK", "MIN_MASKED_LENGTH", "SecretMasker"]

MASK = "***"
MIN_MASKED_LENGTH = 4


class SecretMasker:
    """Replaces every occurrence of the secrets in each stream's text by ``MASK``.

    ``feed`` returns what may be passed on now; ``flush`` what was held back at the end of
    a stream. Where secrets overlap, the longest one starting first is masked.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first: where two start at the same place, the alternation takes the longer.
        self._secrets = sorted(
            {secret for secret in secrets if len(secret) >= MIN_MASKED_LENGTH},
            key=lambda secret: (-len(secret), secret),
        )
        self._pattern = (
            re.compile("|".join(re.escape(secret) for secret in self._secrets))
            if self._secrets
            else None
        )
        self._longest = len(self._secrets[0]) if self._secrets else 0
        # A held-back end can only begin at a character some secret starts with; the regex
        # engine finds those, so a write's end costs no Python work per character (trying
        # every position there made an 80-byte write ~17x dearer than with no secrets).
        first_characters = {secret[0] for secret in self._secrets}
        self._secret_start = (
            re.compile("|".join(re.escape(first) for first in first_characters))
            if first_characters
            else None
        )
        self._held: dict[str, str] = {}

    @property
    def active(self) -> bool:
        return self._pattern is not None

    def mask(self, text: str) -> str:
        """``text`` with every whole occurrence masked (for text that comes in one piece)."""
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def feed(self, stream: str, data: str) -> str:
        """The part of ``stream``'s output, up to and with ``data``, that is final now."""
        if self._pattern is None:
            return data
        text = self._held.pop(stream, "") + data
        out: list[str] = []
        position = 0
        while True:
            hold = self._hold_from(text, position)
            found = self._pattern.search(text, position)
            # A secret found inside the held end may yet be part of a longer one.
            if found is None or found.start() >= hold:
                out.append(text[position:hold])
                if hold < len(text):
                    self._held[stream] = text[hold:]
                return "".join(out)
            # It starts before the held end, so no longer secret can start where it does
            # (text from there would be held): it is final.
            out.append(text[position : found.start()])
            out.append(MASK)
            position = found.end()

    def flush(self, stream: str) -> str:
        """What ``stream`` still holds back, masked: the stream has ended."""
        return self.mask(self._held.pop(stream, ""))

    def flush_all(self) -> list[tuple[str, str]]:
        """(stream, text) of everything still held back, masked, in stream order."""
        return [(stream, self.flush(stream)) for stream in list(self._held)]

    def _hold_from(self, text: str, position: int) -> int:
        """The first index at or after ``position`` from which the rest of ``text`` is the
        start of a secret but not yet all of it (``len(text)`` if there is none)."""
        end = len(text)
        assert self._secret_start is not None  # only called while masking
        for candidate in self._secret_start.finditer(text, max(position, end - self._longest + 1)):
            tail = text[candidate.start() :]
            if any(len(secret) > len(tail) and secret.startswith(tail) for secret in self._secrets):
                return candidate.start()
        return end
