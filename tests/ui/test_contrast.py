"""The stylesheet's colours meet WCAG AA in both colour schemes, computed from belfry.css
itself: its custom properties for the light scheme, then the dark scheme's overrides, and
the primary button's own rule. A colour changed to a low-contrast one fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from belfry.server.ui import app

CSS = Path(app.__file__).with_name("static") / "belfry.css"
TEXT = 4.5  # WCAG 2.x AA, normal-size text
NON_TEXT = 3.0  # WCAG 2.x AA, user-interface parts (focus ring, current-page underline)

# Text on a background: (text, background) custom properties. Pages draw on --bg; the
# header, cards, panels and confirmations on --card; output on --code.
TEXT_PAIRS = [
    (text, background)
    for text in ("fg", "muted", "link", "ok", "bad", "warn", "info", "skip")
    for background in ("bg", "card")
] + [("fg", "code"), ("bad", "code"), ("muted", "code")]
NON_TEXT_PAIRS = [("focus", "bg"), ("focus", "card"), ("accent", "bg"), ("accent", "card")]

_BLOCK = re.compile(r":root\s*\{([^}]*)\}")
_PROPERTY = re.compile(r"--([a-z-]+)\s*:\s*([^;]+);")
_DARK = re.compile(r"@media\s*\(prefers-color-scheme:\s*dark\)\s*\{")


def schemes(css: str) -> dict[str, dict[str, str]]:
    """The custom properties of each scheme: light is the first ``:root``; dark is light
    with the ``:root`` inside the dark media query laid over it."""
    dark_at = _DARK.search(css)
    assert dark_at is not None, "belfry.css has no dark scheme"
    light_block = _BLOCK.search(css, 0, dark_at.start())
    dark_block = _BLOCK.search(css, dark_at.end())
    assert light_block is not None and dark_block is not None
    light = dict(_PROPERTY.findall(light_block.group(1)))
    return {"light": light, "dark": {**light, **dict(_PROPERTY.findall(dark_block.group(1)))}}


def rule(css: str, selector: str) -> dict[str, str]:
    """The declarations of the rule for exactly ``selector``."""
    found = re.search(rf"(?:^|\}})\s*{re.escape(selector)}\s*\{{([^}}]*)\}}", css, re.M)
    assert found is not None, f"no rule for {selector}"
    return {
        name.strip(): value.strip()
        for name, value in (item.split(":", 1) for item in found.group(1).split(";") if ":" in item)
    }


def resolve(value: str, properties: dict[str, str]) -> str:
    """``var(--x)`` to its colour in the scheme; a colour as it is."""
    while (reference := re.fullmatch(r"var\(--([a-z-]+)\)", value.strip())) is not None:
        value = properties[reference.group(1)]
    return value.strip()


def luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of ``#rgb`` or ``#rrggbb``."""
    digits = colour.strip().lstrip("#")
    if len(digits) == 3:
        digits = "".join(2 * digit for digit in digits)
    assert re.fullmatch(r"[0-9a-fA-F]{6}", digits), f"not a hex colour: {colour}"
    channels = [int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    red, green, blue = (
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels
    )
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(one: str, other: str) -> float:
    lighter, darker = sorted((luminance(one), luminance(other)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_the_formula_matches_known_ratios() -> None:
    assert contrast("#000", "#fff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast("#ffffff", "#2f81f7") == pytest.approx(3.75, abs=0.01)  # the old accent


CSS_TEXT = CSS.read_text()
SCHEMES = schemes(CSS_TEXT)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_colours_reach_aa_on_their_backgrounds(scheme: str) -> None:
    colours = SCHEMES[scheme]
    low = {
        f"--{text} on --{background}": round(ratio, 2)
        for text, background in TEXT_PAIRS
        if (ratio := contrast(colours[text], colours[background])) < TEXT
    }
    assert not low, f"{scheme}: below {TEXT}:1: {low}"
    low = {
        f"--{part} on --{background}": round(ratio, 2)
        for part, background in NON_TEXT_PAIRS
        if (ratio := contrast(colours[part], colours[background])) < NON_TEXT
    }
    assert not low, f"{scheme}: below {NON_TEXT}:1: {low}"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_buttons_text_reaches_aa_on_their_own_backgrounds(scheme: str) -> None:
    colours = SCHEMES[scheme]
    base = rule(CSS_TEXT, "button")
    for selector in ("button.primary", "button.danger", "details.confirm > summary"):
        declared = {**base, **rule(CSS_TEXT, selector)}
        text = resolve(declared["color"], colours)
        background = resolve(declared["background"], colours)
        ratio = contrast(text, background)
        assert ratio >= TEXT, f"{scheme}: {selector}: {text} on {background}: {ratio:.2f}"


def test_a_low_contrast_colour_is_caught() -> None:
    """The check reads the stylesheet: the old dark accent under white fails it."""
    old = CSS_TEXT.replace("--accent: #1f6feb", "--accent: #2f81f7")
    assert old != CSS_TEXT
    colours = schemes(old)["dark"]
    declared = rule(old, "button.primary")
    text, background = (resolve(declared[key], colours) for key in ("color", "background"))
    assert contrast(text, background) < TEXT
