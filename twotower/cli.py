"""The ``twotower`` command. Each subcommand is thin wiring around one stage module."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from twotower.config import ConfigError, Settings, load_settings
from twotower.errors import UserError

app = typer.Typer(
    help="Two-tower recall on a feature store: simulate/ingest, validate, train, publish, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    workspace: Optional[Path] = typer.Option(
        None,
        "--workspace",
        "-w",
        envvar="TWOTOWER_WORKSPACE",
        help="Directory holding everything the platform writes (default: ./workspace).",
    ),
) -> None:
    ctx.obj = load_settings(workspace=workspace)


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.obj


def main() -> None:
    try:
        app(standalone_mode=False)
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


# Subcommands register themselves on ``app`` (one module per stage).
from twotower import commands  # noqa: E402,F401
