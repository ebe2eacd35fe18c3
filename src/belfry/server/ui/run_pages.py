"""(Being built.)"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["run_router"]


def run_router() -> APIRouter:
    return APIRouter(include_in_schema=False)
