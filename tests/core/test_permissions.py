"""Roles per group: what each role may do, on which groups, and what a worker may not."""

from __future__ import annotations

import pytest

from belfry.core.permissions import Permission, Principal, Role, role_for

P = Permission


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.VIEWER, {P.READ}),
        (Role.OPERATOR, {P.READ, P.OPERATE}),
        (Role.EDITOR, {P.READ, P.OPERATE, P.EDIT}),
        (Role.ADMIN, {P.READ, P.OPERATE, P.EDIT, P.ADMINISTER}),
    ],
)
def test_each_role_has_the_permissions_of_those_below_it(
    role: Role, allowed: set[Permission]
) -> None:
    user = Principal("u", grants={"billing": role})
    assert {p for p in Permission if user.can(p, "billing")} == allowed
    assert not any(user.can(p, "reports") for p in Permission)  # another group: nothing


def test_a_grant_on_every_group_and_the_strongest_role_wins() -> None:
    user = Principal("u", grants={"*": Role.VIEWER, "billing": Role.EDITOR})
    assert user.can(P.READ, "anything") and not user.can(P.OPERATE, "anything")
    assert user.can(P.EDIT, "billing")
    assert user.readable_groups() is None  # every group
    assert Principal("v", grants={"b": Role.VIEWER}).readable_groups() == {"b"}


def test_global_admins_may_do_everything_and_workers_nothing() -> None:
    admin = Principal("root", global_admin=True)
    assert all(admin.can(p, "any") for p in Permission)
    worker = Principal("w", grants={"*": Role.ADMIN}, worker_pools=("default",))
    assert worker.is_worker and not any(worker.can(p, "any") for p in Permission)
    assert worker.readable_groups() == frozenset()


def test_an_unknown_role_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="role: must be one of viewer, operator, editor, admin"):
        role_for("owner")
