"""What every `chakor` subcommand shares: its settings, one console, and one way from an error to an exit code.

Exit codes: 0 done; 1 the work was tried and failed (a training run crashed, a quantization gate failed);
2 the command cannot run as given (a bad option, a missing or malformed input, a bad `CHAKOR_*` setting),
as typer's own usage errors are. Either way the message is one red line and nothing is half-written.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from common.settings import Settings, SettingsError, get_settings

FAILED = 1
USAGE = 2

console = Console()
Command = TypeVar("Command", bound=Callable[..., Any])


def fail(message: object, code: int = USAGE) -> NoReturn:
    """Print `message` as one red line (never read as markup) and exit with `code`."""
    console.print(f"[red]error:[/red] {escape(str(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    """Settings, or exit 2 with the message naming the bad CHAKOR_* variable."""
    try:
        return get_settings()
    except SettingsError as exc:
        fail(exc)


def user_errors(
    *usage: type[BaseException], failed: tuple[type[BaseException], ...] = ()
) -> Callable[[Command], Command]:
    """A command decorator: exceptions of the `usage` types exit 2, of the `failed` types exit 1, each
    with its message; anything else is a bug and keeps its traceback."""

    def decorate(command: Command) -> Command:
        @wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except usage as exc:
                fail(exc, USAGE)
            except failed as exc:
                fail(exc, FAILED)

        return wrapper  # type: ignore[return-value]

    return decorate
