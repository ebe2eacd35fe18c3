"""(Being built.)"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["job_detail_router"]


def job_detail_router() -> APIRouter:
    return APIRouter(include_in_schema=False)
