"""``plugmq user``: users and their tags on a remote broker (``rabbitmqctl add_user``...).

Passwords travel in the request body over the broker connection: use a TLS transport (or a
loopback one) in production. Omit PASSWORD to be prompted for it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from plugmq.cli.admin import Admin, BrokerOption, JsonOption, TimeoutOption
from plugmq.cli.output import show_message, show_table
from plugmq.management.client import DEFAULT_TIMEOUT

Password = Annotated[str | None, typer.Argument(help="The password (prompted for when omitted).")]


def _password(password: str | None) -> str:
    if password is not None:
        return password
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def make_user_app(admin: Admin) -> typer.Typer:
    """The ``user`` command group."""
    app = typer.Typer(help="Add, delete and list users; passwords and tags.", no_args_is_help=True)

    @app.command("add")
    def add(
        name: str,
        password: Password = None,
        tag: Annotated[
            list[str] | None,
            typer.Option("--tag", "-t", help="A tag: administrator, monitoring... (repeatable)."),
        ] = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Create user NAME."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_message("user '{name}' added"),
            "user.add",
            name=name,
            password=_password(password),
            tags=tag or [],
        )

    @app.command("delete")
    def delete(
        name: str,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Delete user NAME, its permissions and its connections."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_message("user '{name}' deleted"),
            "user.delete",
            name=name,
        )

    @app.command("list")
    def list_(
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """List users and their tags."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_table([("user", "name"), ("tags", "tags")]),
            "user.list",
        )

    @app.command("passwd")
    def passwd(
        name: str,
        password: Password = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Change the password of user NAME."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_message("password of '{name}' changed"),
            "user.passwd",
            name=name,
            password=_password(password),
        )

    @app.command("tags")
    def tags(
        name: str,
        tag: Annotated[list[str] | None, typer.Argument(help="The new tags (none clears).")] = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Replace the tags of user NAME."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_message("tags of '{name}' set to {tags}"),
            "user.tags",
            name=name,
            tags=tag or [],
        )

    return app
