"""CLI subcommands: parse options, call the stage module, print a short summary."""

from __future__ import annotations

import typer

from twotower.cli import app, settings_of
