"""The CLI tests run in their own temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Relative paths keep the expected messages short: "jobs.yaml:3: ...".
    monkeypatch.chdir(tmp_path)
