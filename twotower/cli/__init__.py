"""The ``twotower`` command: the Typer app (app.py), its subcommands (commands.py), the demo."""

from __future__ import annotations

import sys

import typer

from twotower.cli import commands  # noqa: F401  (registers the subcommands on ``app``)
from twotower.cli.app import app
from twotower.core.config import ConfigError
from twotower.core.errors import UserError

__all__ = ["app", "main"]


def main() -> None:
    try:
        code = app(standalone_mode=False)  # click returns a command's typer.Exit code here
        if isinstance(code, int) and code:
            sys.exit(code)
    except (UserError, ConfigError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        # Usage errors (typer bundles its own click) carry their message and exit code.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
