"""(Being built.)"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["dashboard_router"]


def dashboard_router() -> APIRouter:
    return APIRouter(include_in_schema=False)
