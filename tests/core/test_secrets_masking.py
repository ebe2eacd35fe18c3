"""Masking secret values in output that arrives in pieces (pure: core.output_masking)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from belfry.core.output_masking import MASK, MIN_MASKED_LENGTH, SecretMasker


def _stream(masker: SecretMasker, pieces: list[str], stream: str = "stdout") -> str:
    return "".join(masker.feed(stream, piece) for piece in pieces) + masker.flush(stream)


def test_a_whole_secret_is_masked() -> None:
    masker = SecretMasker(["abcdef"])
    assert _stream(masker, ["key=abcdef; again abcdef\n"]) == f"key={MASK}; again {MASK}\n"


def test_a_secret_split_across_writes_is_masked() -> None:
    masker = SecretMasker(["abcdef"])
    assert masker.feed("stdout", "x abc") == "x "  # "abc" may be the start of the secret
    assert masker.feed("stdout", "def y") == f"{MASK} y"
    assert masker.flush("stdout") == ""


def test_a_secret_split_into_single_characters_is_masked() -> None:
    masker = SecretMasker(["abcdef"])
    assert _stream(masker, list("[abcdef]")) == f"[{MASK}]"


def test_text_that_only_starts_like_a_secret_is_passed_on_whole() -> None:
    masker = SecretMasker(["abcdef"])
    assert masker.feed("stdout", "abc") == ""
    assert masker.feed("stdout", "xyz") == "abcxyz"
    assert masker.feed("stdout", "ends with ab") == "ends with "
    assert masker.flush("stdout") == "ab"


def test_text_with_no_start_of_a_secret_is_not_held_back() -> None:
    masker = SecretMasker(["abcdef"])
    assert masker.feed("stdout", "hello world\n") == "hello world\n"


def test_streams_are_held_back_separately() -> None:
    masker = SecretMasker(["abcdef"])
    assert masker.feed("stdout", "abc") == ""
    assert masker.feed("stderr", "def") == "def"  # not the rest of stdout's "abc"
    assert masker.feed("stdout", "def") == MASK
    assert masker.flush_all() == []


def test_the_longer_of_two_secrets_starting_alike_is_masked_whole() -> None:
    masker = SecretMasker(["abcd", "abcdefgh"])
    # "abcd" is complete, but may be the start of "abcdefgh": nothing of it leaks.
    assert masker.feed("stdout", "abcd") == ""
    assert masker.feed("stdout", "efgh!") == f"{MASK}!"
    assert _stream(masker, ["abcd!"]) == f"{MASK}!"


def test_short_secrets_are_not_masked() -> None:
    masker = SecretMasker(["abc", "1", ""])
    assert not masker.active
    assert _stream(masker, ["abc 1\n"]) == "abc 1\n"
    assert len("abcd") == MIN_MASKED_LENGTH
    assert _stream(SecretMasker(["abcd"]), ["abcd"]) == MASK


def test_regex_characters_in_a_secret_are_literal() -> None:
    masker = SecretMasker(["a.b*c(d"])
    assert _stream(masker, ["a.b*c(d axbbbcd"]) == f"{MASK} axbbbcd"


def test_secrets_starting_with_regex_characters_are_held_back_and_masked() -> None:
    """The held-back end is looked for at the characters secrets start with (as a regex):
    those must be taken literally, whatever they are."""
    secrets = ["]x-y1", "^abc2", "\\ab3", "-dash4", ".dot5", "|bar6", "[br7"]
    masker = SecretMasker(secrets)
    for secret in secrets:
        text = f"<{secret}>"
        for cut in range(1, len(text)):
            assert _stream(masker, [text[:cut], text[cut:]]) == f"<{MASK}>", (secret, cut)
        assert _stream(masker, list(text)) == f"<{MASK}>"
        # Only the start of a secret at the end is held back, from its first character.
        assert masker.feed("stdout", f"x{secret[:-1]}") == "x"
        assert masker.flush("stdout") == secret[:-1]


def test_only_an_end_that_starts_a_secret_is_held_back() -> None:
    masker = SecretMasker(["token-1234"])
    # "t" occurs often near the end; only the "tok" that starts the secret is held.
    assert masker.feed("stdout", "that tot is at tok") == "that tot is at "
    assert masker.feed("stdout", "en-1234 ok\n") == f"{MASK} ok\n"


def test_mask_replaces_whole_occurrences() -> None:
    assert SecretMasker(["p@ss-word"]).mask("x p@ss-word y") == f"x {MASK} y"


_ALPHABET = "abc-\n"


@given(
    secrets=st.lists(st.text(_ALPHABET, min_size=1, max_size=7), min_size=1, max_size=3),
    text=st.text(_ALPHABET, max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=12),
)
def test_any_split_masks_as_the_whole_text_does(
    secrets: list[str], text: str, cuts: list[int]
) -> None:
    """However the output is cut into writes, what comes out is the whole text masked."""
    bounds = sorted({0, len(text), *(cut for cut in cuts if cut < len(text))})
    pieces = [text[start:end] for start, end in itertools.pairwise(bounds)]
    masker = SecretMasker(secrets)
    streamed = _stream(masker, pieces)
    assert streamed == SecretMasker(secrets).mask(text)
    for secret in secrets:
        if len(secret) >= MIN_MASKED_LENGTH:
            assert secret not in streamed.replace(MASK, "\x00")
