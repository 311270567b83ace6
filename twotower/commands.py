"""CLI subcommands: parse options, call the stage module, print a short summary."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from twotower.cli import app, settings_of
from twotower.workspace import Workspace

feast_app = typer.Typer(help="Run Feast against the workspace (apply, materialize).", no_args_is_help=True)
app.add_typer(feast_app, name="feast")


def _ws(ctx: typer.Context) -> Workspace:
    return Workspace(settings_of(ctx).workspace)


@app.command()
def simulate(
    ctx: typer.Context,
    users: Optional[int] = typer.Option(None, help="Users at the start (new ones sign up daily)."),
    items: Optional[int] = typer.Option(None, help="Items at the start (new ones appear daily)."),
    days: Optional[int] = typer.Option(None, help="Days of events to generate."),
    seed: Optional[int] = typer.Option(None, help="Random seed (same seed, same world)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing world in the workspace."),
) -> None:
    """Simulate a notes feed into the offline store (users, items, events by day, ground truth)."""
    from twotower.simulate import simulate as run

    s = run(settings_of(ctx), _ws(ctx), users=users, items=items, days=days, seed=seed, force=force, log=typer.echo)
    typer.echo(
        f"simulated {len(s.days)} days: {s.users:,} users, {s.items:,} items, {s.events:,} events "
        f"({s.clicks:,} clicks) in {s.seconds:.1f}s = {s.events_per_second:,.0f} events/s"
    )


@feast_app.command("apply")
def feast_apply(ctx: typer.Context) -> None:
    """`feast apply` of feature_repo/ against this workspace."""
    from twotower import feature_store

    typer.echo(feature_store.apply(settings_of(ctx), _ws(ctx)).strip())


@feast_app.command("materialize")
def feast_materialize(
    ctx: typer.Context,
    end: Optional[datetime] = typer.Option(None, help="Materialize up to this time (default: now, UTC)."),
    view: Optional[list[str]] = typer.Option(None, "--view", help="Feature view(s); default all."),
) -> None:
    """`feast materialize-incremental` into the online store."""
    from twotower import feature_store

    end = (end or datetime.now(timezone.utc)).replace(tzinfo=end.tzinfo if end and end.tzinfo else timezone.utc)
    feature_store.materialize(settings_of(ctx), _ws(ctx), end, view or None)
    typer.echo(f"materialized {', '.join(view) if view else 'all views'} up to {end.isoformat()}")


@feast_app.command("yaml")
def feast_yaml(ctx: typer.Context) -> None:
    """Write and print the path of the effective feature_store.yaml (for `feast -f PATH ...`)."""
    from twotower import feature_store

    typer.echo(feature_store.prepare(settings_of(ctx), _ws(ctx)))


@app.command()
def demo(ctx: typer.Context) -> None:
    """Run the daily cycle on a small simulated world and show a result (idempotent)."""
    from twotower import demo as run

    run.run(settings_of(ctx), _ws(ctx), echo=typer.echo)
