"""The ``twotower`` Typer app and its root options; subcommands register on it (commands.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from twotower.core import logs
from twotower.core.config import Settings, load_settings

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
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also show TensorFlow, Feast, Dask and GX output, with times and loggers."
    ),
) -> None:
    logs.configure(verbose)
    ctx.obj = load_settings(workspace=workspace)


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.obj
