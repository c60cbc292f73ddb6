"""`chakor schema export` and `chakor admin create-user`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from backend.core.errors import UserError
from common import REPO_ROOT
from common.cli import settings_or_exit, user_errors
from common.settings import Settings

SCHEMA_PATH = REPO_ROOT / "schema.graphql"


def schema_sdl() -> str:
    """The GraphQL schema in SDL, as `schema.graphql` holds it."""
    from backend.api.schema import schema  # lazy: pulls in strawberry and beanie; `chakor --help` stays fast

    return schema.as_str().rstrip("\n") + "\n"


def export_schema(
    output: Path = typer.Option(SCHEMA_PATH, "--output", "-o", help="Where to write the SDL."),
) -> None:
    """Write the GraphQL schema (SDL) generated from the code."""
    output.write_text(schema_sdl())
    typer.echo(f"wrote {output}")


async def _create_user(
    settings: Settings, email: str, password: str, display_name: str | None, admin: bool
) -> str:
    # lazy, both: they pull in beanie and pymongo; `chakor --help` stays fast
    from backend.core import db
    from backend.services.auth import create_user  # lazy: the same

    client = await db.connect(settings)
    try:
        user = await create_user(email, password, display_name, admin=admin)
        return f"created {user.email} ({user.role.value}) id={user.id}"
    finally:
        await client.close()


# A malformed or taken e-mail, a weak password (all UserErrors): one red line and exit status 2.
@user_errors(UserError)
def create_user_command(
    email: str = typer.Argument(..., help="The new user's e-mail."),
    password: str = typer.Option(
        ..., prompt=True, hide_input=True, confirmation_prompt=True, envvar="CHAKOR_NEW_USER_PASSWORD"
    ),
    display_name: str | None = typer.Option(None, "--display-name"),
    admin: bool = typer.Option(False, "--admin", help="Make the user an admin."),
) -> None:
    """Create a user in the configured database (the way to make the first admin: `--admin`)."""
    settings = settings_or_exit()
    typer.echo(asyncio.run(_create_user(settings, email, password, display_name, admin)))


def register(app: typer.Typer) -> None:
    """Add the backend's commands to the `chakor` CLI."""
    schema_app = typer.Typer(help="The GraphQL schema.", no_args_is_help=True)
    schema_app.command("export")(export_schema)
    admin_app = typer.Typer(help="Administration.", no_args_is_help=True)
    admin_app.command("create-user")(create_user_command)
    app.add_typer(schema_app, name="schema")
    app.add_typer(admin_app, name="admin")
