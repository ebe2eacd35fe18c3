"""A text file uploaded through a form (the apply and import-crontab pages)."""

from __future__ import annotations

from fastapi import UploadFile

__all__ = ["read_text_upload"]


async def read_text_upload(
    upload: UploadFile | None, max_bytes: int
) -> tuple[str | None, str | None, str | None]:
    """(file name, text, problem) of an uploaded file; all None when none was chosen.
    The problem names the file (and the line, for text that is not UTF-8)."""
    if upload is None or not upload.filename:
        return None, None, None
    name = upload.filename
    data = await upload.read(max_bytes + 1)  # never more than one byte too many
    if len(data) > max_bytes:
        return name, None, f"{name}: larger than {max_bytes / 2**20:g} MiB"
    try:
        return name, data.decode("utf-8-sig"), None
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return name, None, f"{name}:{line}: not UTF-8 text"
