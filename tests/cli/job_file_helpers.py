"""Writing job files and collecting what the loader says of them, for the CLI tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from belfry.services.job_files import JobFileError, load_job_files

__all__ = ["problems", "write"]


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(*paths: Path) -> list[str]:
    with pytest.raises(JobFileError) as caught:
        load_job_files(list(paths))
    return [str(problem) for problem in caught.value.problems]
