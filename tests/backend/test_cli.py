"""`schema export` (and schema drift) and `admin create-user`, run as real commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backend.cli import SCHEMA_PATH, schema_sdl
from chakor.services import settings_env
from common.settings import Settings

# The backend's commands in a Typer app of their own, exactly as `chakor` registers them.
RUN_CLI = "import sys, typer; from backend.cli import register; app = typer.Typer(); register(app); app(sys.argv[1:])"


def backend_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_CLI, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def create_user_cli(settings: Settings, email: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """`admin create-user EMAIL [flags]` against `settings`' database (password from the environment)."""
    from tests.support.graphql import PASSWORD

    env = {**settings_env(settings), "CHAKOR_NEW_USER_PASSWORD": PASSWORD}
    return backend_cli("admin", "create-user", email, *flags, env=env)


def test_schema_graphql_matches_the_code() -> None:
    assert SCHEMA_PATH.read_text() == schema_sdl(), "schema.graphql is stale: run `chakor schema export`"


def test_schema_export_writes_the_sdl(tmp_path: Path) -> None:
    out = tmp_path / "schema.graphql"
    result = backend_cli("schema", "export", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text() == schema_sdl()
    for name in ("type Query", "type Mutation", "type Subscription", "union ChatEvent", "input ChatInput"):
        assert name in out.read_text()


def test_admin_create_user(backend) -> None:
    result = create_user_cli(backend.settings, "cli-admin@example.test", "--admin", "--display-name", "Ops")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("created cli-admin@example.test (admin) id=")
    again = create_user_cli(backend.settings, "cli-admin@example.test")
    assert again.returncode == 2  # bad input: the e-mail is taken
    assert again.stdout.strip() == "error: an account with this e-mail already exists"
