"""Account commands: ``belfry users …``, ``belfry grants …`` and ``belfry audit``."""

from __future__ import annotations

import secrets
import sys
from typing import Annotated, Any
from urllib.parse import quote

import typer

from belfry.cli.errors import EXIT_BAD_INPUT, CliError
from belfry.cli.options import Output, Server, Token, connect
from belfry.cli.rendering import OutputFormat, print_json, print_table, short_time

__all__ = ["register"]

UserArg = Annotated[str, typer.Argument(metavar="USER")]
GroupArg = Annotated[str, typer.Argument(metavar="GROUP", help="A group, or * for all.")]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from standard input (default: generate one and print it).",
    ),
]


def _password(from_stdin: bool) -> tuple[str, bool]:
    """The password to set, and whether it was generated here (and must be shown)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CliError("--password-stdin: standard input held no password", EXIT_BAD_INPUT)
        return password, False
    return secrets.token_urlsafe(18), True


def _user_path(name: str) -> str:
    return f"/api/v1/users/{quote(name, safe='')}"


def register(app: typer.Typer) -> None:
    users = typer.Typer(help="Users who log in (global admins).", no_args_is_help=True)
    grants = typer.Typer(help="Roles of users on groups.", no_args_is_help=True)
    app.add_typer(users, name="users")
    app.add_typer(grants, name="grants")

    @users.command("list")
    def list_users(
        server: Server = None, token: Token = None, output: Output = OutputFormat.TABLE
    ) -> None:
        """Every user: global admin, disabled, password login."""
        data = connect(server, token).get("/api/v1/users")
        if output is OutputFormat.JSON:
            print_json(data)
            return
        print_table(
            ["user", "global admin", "disabled", "password", "created"],
            [
                [
                    user["name"],
                    "yes" if user["global_admin"] else "no",
                    "yes" if user["disabled"] else "no",
                    "yes" if user["password_login"] else "no",
                    short_time(user["created_at"]),
                ]
                for user in data
            ],
        )

    @users.command("create")
    def create_user(
        name: UserArg,
        admin: Annotated[bool, typer.Option("--admin", help="A global admin.")] = False,
        password_stdin: PasswordStdin = False,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Create a user (with a generated password, printed once, unless --password-stdin)."""
        password, generated = _password(password_stdin)
        user = connect(server, token).post(
            "/api/v1/users", {"name": name, "password": password, "global_admin": admin}
        )
        if output is OutputFormat.JSON:
            print_json({**user, "password": password} if generated else user)
            return
        print(f"created user {user['name']}" + (" (global admin)" if admin else ""))
        if generated:
            print(f"password (shown once): {password}")

    @users.command("password")
    def set_password(
        name: UserArg,
        password_stdin: PasswordStdin = False,
        server: Server = None,
        token: Token = None,
    ) -> None:
        """Set a new password (ends the user's sessions)."""
        password, generated = _password(password_stdin)
        connect(server, token).put(_user_path(name) + "/password", {"password": password})
        print(f"new password for {name}" + (f" (shown once): {password}" if generated else ""))

    @users.command("disable")
    def disable(name: UserArg, server: Server = None, token: Token = None) -> None:
        """Disable a user: no login, their tokens refused, their sessions ended."""
        connect(server, token).patch(_user_path(name), {"disabled": True})
        print(f"disabled {name}")

    @users.command("enable")
    def enable(name: UserArg, server: Server = None, token: Token = None) -> None:
        connect(server, token).patch(_user_path(name), {"disabled": False})
        print(f"enabled {name}")

    @users.command("delete")
    def delete_user(name: UserArg, server: Server = None, token: Token = None) -> None:
        """Delete a user with their grants, tokens and sessions."""
        connect(server, token).delete(_user_path(name))
        print(f"deleted user {name}")

    @grants.command("list")
    def list_grants(
        user: Annotated[str | None, typer.Option("--user", help="Only this user's.")] = None,
        group: Annotated[str | None, typer.Option("--group", help="Only on this group.")] = None,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Roles of users on groups (those you may see)."""
        data = connect(server, token).get("/api/v1/grants", user=user, group=group)
        if output is OutputFormat.JSON:
            print_json(data)
            return
        print_table(["user", "group", "role"], [[g["user"], g["group"], g["role"]] for g in data])

    @grants.command("add")
    def add_grant(
        user: UserArg,
        group: GroupArg,
        role: Annotated[str, typer.Argument(help="viewer | operator | editor | admin")],
        server: Server = None,
        token: Token = None,
    ) -> None:
        """Give USER the ROLE on GROUP (replacing a role they had there)."""
        if role not in ("viewer", "operator", "editor", "admin"):
            raise CliError(
                f"role: must be viewer, operator, editor or admin, got {role!r}", EXIT_BAD_INPUT
            )
        connect(server, token).put(
            f"/api/v1/grants/{quote(user, safe='')}/{quote(group, safe='')}", {"role": role}
        )
        print(f"{user} is {role} on {group}")

    @grants.command("remove")
    def remove_grant(
        user: UserArg, group: GroupArg, server: Server = None, token: Token = None
    ) -> None:
        """Take USER's role on GROUP away."""
        connect(server, token).delete(
            f"/api/v1/grants/{quote(user, safe='')}/{quote(group, safe='')}"
        )
        print(f"{user} has no role on {group} any more")

    @app.command()
    def audit(
        group: Annotated[str | None, typer.Option("--group", help="Only this group.")] = None,
        actor: Annotated[str | None, typer.Option("--actor", help="Only by this user.")] = None,
        action: Annotated[
            str | None, typer.Option("--action", help="e.g. job, job.update, login.")
        ] = None,
        since: Annotated[str | None, typer.Option("--since", help="RFC 3339 time.")] = None,
        limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Who changed or did what, when, from where (newest first)."""
        data = connect(server, token).get(
            "/api/v1/audit", group=group, actor=actor, action=action, since=since, limit=limit
        )
        if output is OutputFormat.JSON:
            print_json(data)
            return
        print_table(
            ["when", "who", "from", "action", "group", "target", "change"],
            [
                [
                    short_time(entry["at"]),
                    entry["actor"],
                    entry["address"] or "-",
                    entry["action"],
                    entry["group"] or "-",
                    entry["target"] or "-",
                    _change(entry),
                ]
                for entry in data
            ],
        )


def _change(entry: dict[str, Any]) -> str:
    """The fields an update changed, briefly (the JSON output has before and after)."""
    before, after = entry.get("before"), entry.get("after")
    if isinstance(before, dict) and isinstance(after, dict):
        return ", ".join(sorted(set(before) | set(after)))[:60] or "-"
    return "-"
