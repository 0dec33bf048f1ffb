"""`predictflow access`: users and roles on the team server."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    pass

from predictflow.commands.common import (
    ROLES,
    emit,
    json_option,
)


@click.group()
def access() -> None:
    """Team server: create users, grant roles reader / experimenter / releaser.

    Against MLFLOW_TRACKING_URI with an admin's MLFLOW_TRACKING_USERNAME /
    MLFLOW_TRACKING_PASSWORD. reader: READ on the experiment and the model; experimenter: EDIT
    on both (log runs, register, move staging); releaser: EDIT on the experiment, MANAGE on the
    model (also moves production).
    """


role_option = click.option("--role", required=True, type=click.Choice(ROLES))


@access.command("whoami")
@json_option
def access_whoami(as_json: bool) -> None:
    """The login the server accepts from your credentials, and its role."""
    from predictflow.lineage import access as access_
    from predictflow.lineage.server import team_server

    facts = access_.whoami(*team_server())
    emit(facts, as_json, f"{facts['user']} on {facts['server']}: {facts['role']}")


@access.command("add")
@click.argument("user")
@role_option
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin (default: prompt).",
)
@json_option
def access_add(user: str, role: str, password_stdin: bool, as_json: bool) -> None:
    """Create USER (a login name) with a role."""
    import getpass

    from predictflow.lineage import access as access_
    from predictflow.lineage.server import team_server

    access_.check_user_name(user)  # before the prompt: a blank name is never created
    uri, _ = team_server()
    password = (
        sys.stdin.readline().rstrip("\n")
        if password_stdin
        else getpass.getpass(f"password for {user}: ")
    )
    facts = access_.add_user(uri, user, password, role)
    emit(facts, as_json, f"{user}: {role} on {access_.server_of(uri)}")


@access.command("grant")
@click.argument("user")
@role_option
@json_option
def access_grant(user: str, role: str, as_json: bool) -> None:
    """Give an existing USER a role (replaces the one they had)."""
    from predictflow.lineage import access as access_
    from predictflow.lineage.server import team_server

    uri, _ = team_server()
    facts = access_.grant(uri, user, role)
    emit(facts, as_json, f"{user}: {role} on {access_.server_of(uri)}")
