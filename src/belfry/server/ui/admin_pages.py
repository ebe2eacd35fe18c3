"""(Being built.)"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["admin_router"]


def admin_router() -> APIRouter:
    return APIRouter(include_in_schema=False)
