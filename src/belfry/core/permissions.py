"""Who may do what (DESIGN.md "Security"; issue 6): roles per group, global admins.

A user holds a role per group (or for every group, ``*``): viewer reads, operator also
runs, kills, pauses, resumes and backfills, editor also creates, changes and deletes jobs,
admin also manages the group's grants, maintenance and channels. A global admin may do
everything, including users, calendars (shared by all groups) and worker tokens. A worker
token is no user at all: it may only speak the worker protocol for its pools.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "ALL_GROUPS",
    "Permission",
    "Principal",
    "Role",
    "role_for",
]

# A grant on this group applies to every group.
ALL_GROUPS = "*"


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    EDITOR = "editor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.EDITOR: 2, Role.ADMIN: 3}


class Permission(StrEnum):
    """What an endpoint needs on a group; each is the least role that has it."""

    READ = "read"  # jobs, runs, output, history
    OPERATE = "operate"  # run now, kill, pause, resume, backfill
    EDIT = "edit"  # create, change, delete jobs
    ADMINISTER = "administer"  # the group's grants, maintenance, channels

    @property
    def least_role(self) -> Role:
        return _LEAST_ROLE[self]


_LEAST_ROLE = {
    Permission.READ: Role.VIEWER,
    Permission.OPERATE: Role.OPERATOR,
    Permission.EDIT: Role.EDITOR,
    Permission.ADMINISTER: Role.ADMIN,
}


def role_for(text: str) -> Role:
    """A role from its name; ValueError naming the allowed ones."""
    try:
        return Role(text)
    except ValueError:
        allowed = ", ".join(role.value for role in Role)
        raise ValueError(f"role: must be one of {allowed}, got {text!r}") from None


@dataclass(frozen=True)
class Principal:
    """The caller of a request, as authenticated: a user (through a session or one of
    their tokens), an admin token made on a server host, or a worker token."""

    name: str
    global_admin: bool = False
    grants: Mapping[str, Role] = field(default_factory=dict)
    # Set for worker tokens only: the pools the worker may serve.
    worker_pools: tuple[str, ...] | None = None
    user_id: int | None = None
    token_id: int | None = None

    @property
    def is_worker(self) -> bool:
        return self.worker_pools is not None

    def role_in(self, group: str) -> Role | None:
        """The strongest role this principal holds on ``group`` (None: none)."""
        if self.is_worker:
            return None
        if self.global_admin:
            return Role.ADMIN
        held = [role for name, role in self.grants.items() if name in (group, ALL_GROUPS)]
        return max(held, key=lambda role: role.rank) if held else None

    def can(self, permission: Permission, group: str) -> bool:
        role = self.role_in(group)
        return role is not None and role.rank >= permission.least_role.rank

    def can_all(self, permission: Permission, groups: Iterable[str]) -> bool:
        return all(self.can(permission, group) for group in groups)

    def readable_groups(self) -> frozenset[str] | None:
        """The groups this principal may read; None means every group."""
        if self.is_worker:
            return frozenset()
        if self.global_admin or ALL_GROUPS in self.grants:
            return None
        return frozenset(self.grants)
