"""Users, their passwords and roles per group, and browser sessions (issue 6).

Passwords are hashed with argon2id (pwdlib), off the event loop: a hash costs ~0.15 s of
CPU on purpose. A session is a random cookie value, stored only as its SHA-256, with a
CSRF token the browser's state-changing requests must echo.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from pwdlib import PasswordHash

from belfry.core.permissions import ALL_GROUPS, Principal, Role, role_for
from belfry.core.records import GrantRecord, UserRecord
from belfry.ports.clock import Clock
from belfry.ports.store import Store

__all__ = [
    "SESSION_LIFETIME",
    "AccountError",
    "AccountService",
    "GrantChange",
    "Login",
    "UnknownUser",
    "generate_password",
    "principal_of",
]

SESSION_LIFETIME = timedelta(hours=12)
_USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,99}$")
_GROUP = re.compile(r"^[a-z0-9][a-z0-9-_.]{0,199}$")
MIN_PASSWORD = 12


class AccountError(ValueError):
    """A request about accounts that cannot be done as asked (the message says why)."""


class UnknownUser(AccountError):
    pass


@dataclass(frozen=True)
class Login:
    """A new browser session: the cookie's value (shown to the browser only) and the CSRF
    token its forms and scripts must send back."""

    session: str
    csrf_token: str
    principal: Principal


@dataclass(frozen=True)
class GrantChange:
    """One grant ``set_grants`` changed: the role on ``group`` before and after (None:
    none)."""

    group: str
    before: str | None
    after: str | None


async def principal_of(store: Store, user: UserRecord, token_id: int | None = None) -> Principal:
    """What ``user`` may do: their grants as they are now (through ``token_id``, if a
    token of theirs authenticated the request)."""
    held = await store.list_grants(user.id)
    return Principal(
        name=user.name,
        global_admin=user.global_admin,
        grants={grant.group: Role(grant.role) for grant in held},
        user_id=user.id,
        token_id=token_id,
    )


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def session_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class AccountService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._hasher = PasswordHash.recommended()
        # Verified against when the user does not exist, so a login costs the same time
        # either way (no telling user names apart by timing).
        self._decoy = self._hasher.hash(secrets.token_hex(16))

    # -- users ------------------------------------------------------------------------------
    async def create_user(
        self, name: str, password: str | None, *, global_admin: bool = False
    ) -> UserRecord:
        if not _USER_NAME.match(name):
            raise AccountError(
                f"name: {name!r} must be 1-100 of a-z 0-9 . _ @ - (starting with a letter or digit)"
            )
        hashed = await self._hash(password) if password is not None else None
        try:
            return await self._store.create_user(name, hashed, global_admin, self._clock.now())
        except ValueError as error:
            raise AccountError(str(error)) from None

    async def ensure_first_admin(self) -> tuple[str, str] | None:
        """First start: an ``admin`` user with a random password, returned once (None if
        any user exists already)."""
        if await self._store.count_users() > 0:
            return None
        password = generate_password()
        await self.create_user("admin", password, global_admin=True)
        return "admin", password

    async def get(self, name: str) -> UserRecord:
        user = await self._store.get_user(name)
        if user is None:
            raise UnknownUser(f"no user named {name!r}")
        return user

    async def all(self) -> list[UserRecord]:
        return await self._store.list_users()

    async def delete(self, name: str) -> UserRecord:
        user = await self.get(name)
        await self._store.delete_user(name)
        return user

    async def update(
        self,
        name: str,
        *,
        password: str | None = None,
        disabled: bool | None = None,
        global_admin: bool | None = None,
    ) -> UserRecord:
        hashed = await self._hash(password) if password is not None else None
        user = await self._store.update_user(
            name, password_hash=hashed, disabled=disabled, global_admin=global_admin
        )
        if user is None:
            raise UnknownUser(f"no user named {name!r}")
        return user

    async def _hash(self, password: str) -> str:
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"password: must be at least {MIN_PASSWORD} characters")
        return await asyncio.to_thread(self._hasher.hash, password)

    # -- grants -----------------------------------------------------------------------------
    async def grant(self, user_name: str, group: str, role: str) -> GrantRecord:
        user = await self.get(user_name)
        if group != ALL_GROUPS and not _GROUP.match(group):
            raise AccountError(f"group: {group!r} is not a group name (or * for all groups)")
        try:
            checked = role_for(role)
        except ValueError as error:
            raise AccountError(str(error)) from None
        await self._store.set_grant(user.id, group, checked.value)
        return GrantRecord(user.name, group, checked.value)

    async def revoke_grant(self, user_name: str, group: str) -> bool:
        user = await self.get(user_name)
        return await self._store.remove_grant(user.id, group)

    async def grants(
        self, user_name: str | None = None, groups: frozenset[str] | None = None
    ) -> list[GrantRecord]:
        user_id = (await self.get(user_name)).id if user_name is not None else None
        return await self._store.list_grants(user_id, groups)

    async def set_grants(self, user_name: str, wanted: Mapping[str, Role]) -> list[GrantChange]:
        """Make ``user_name``'s grants exactly ``wanted`` (for an outside source of truth,
        such as the identity provider's groups): roles it lacks are set, roles not wanted
        are removed. Returns what changed, by group."""
        user = await self.get(user_name)
        for group in wanted:
            if group != ALL_GROUPS and not _GROUP.match(group):
                raise AccountError(f"group: {group!r} is not a group name (or * for all groups)")
        held = {grant.group: grant.role for grant in await self._store.list_grants(user.id)}
        changes: list[GrantChange] = []
        for group in sorted(set(held) | set(wanted)):
            before, after = held.get(group), wanted.get(group)
            if after is None:
                await self._store.remove_grant(user.id, group)
            elif before != after.value:
                await self._store.set_grant(user.id, group, after.value)
            else:
                continue
            changes.append(GrantChange(group, before, after.value if after else None))
        return changes

    async def principal(self, user: UserRecord, token_id: int | None = None) -> Principal:
        return await principal_of(self._store, user, token_id)

    # -- sessions ---------------------------------------------------------------------------
    async def log_in(self, name: str, password: str) -> Login | None:
        """A session for ``name`` if the password is right and the user may log in."""
        user = await self._store.get_user(name)
        stored = user.password_hash if user is not None else None
        matches = await asyncio.to_thread(self._hasher.verify, password, stored or self._decoy)
        if user is None or stored is None or not matches or user.disabled:
            return None
        session = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        now = self._clock.now()
        await self._store.create_session(
            session_hash(session), user.id, csrf, now, now + SESSION_LIFETIME
        )
        return Login(session, csrf, await self.principal(user))

    async def start_session(self, user_name: str) -> Login | None:
        """A session for ``user_name`` without a password: for a user who proved who they
        are some other way (to the identity provider). None if the user is disabled or
        gone."""
        user = await self._store.get_user(user_name)
        if user is None or user.disabled:
            return None
        session = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        now = self._clock.now()
        await self._store.create_session(
            session_hash(session), user.id, csrf, now, now + SESSION_LIFETIME
        )
        return Login(session, csrf, await self.principal(user))

    async def session(self, value: str) -> tuple[Principal, str] | None:
        """The principal of a session cookie and its CSRF token (None: no such session)."""
        found = await self._store.find_session(session_hash(value), self._clock.now())
        if found is None:
            return None
        user = await self._store.get_user_by_id(found.user_id)
        if user is None or user.disabled:
            return None
        return await self.principal(user), found.csrf_token

    async def log_out(self, value: str) -> None:
        await self._store.delete_session(session_hash(value))
