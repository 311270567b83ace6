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


generations_app = typer.Typer(help="List published generations; roll back to the previous one.")
app.add_typer(generations_app, name="generations")


@generations_app.callback(invoke_without_command=True)
def generations_list(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")
) -> None:
    """List generations (* = served)."""
    if ctx.invoked_subcommand is not None:
        return
    from twotower import generations as gens

    ws = _ws(ctx)
    ptr = gens.read_pointer(ws)
    current_id = ptr.current if ptr else None
    manifests = gens.listing(ws)
    if as_json:
        typer.echo(gens.as_json(manifests, current_id))
    elif not manifests:
        typer.echo("no generation published yet (run `twotower full-update DAY`)")
    for m in [] if as_json else manifests:
        typer.echo(gens.describe(m, m.id == current_id))


@generations_app.command("rollback")
def generations_rollback(ctx: typer.Context) -> None:
    """Serve the previously published generation again."""
    from twotower import generations as gens

    ptr = gens.rollback(_ws(ctx))
    typer.echo(f"now serving {ptr.current}")


@app.command()
def ingest(
    ctx: typer.Context,
    events: Optional[Path] = typer.Option(None, help="Events file (CSV or parquet)."),
    users: Optional[Path] = typer.Option(None, help="Users file (CSV or parquet)."),
    items: Optional[Path] = typer.Option(None, help="Items file (CSV or parquet)."),
) -> None:
    """Bring your own data into the offline store (schema: docs/data-schema.md). All or nothing."""
    from twotower.ingest import ingest as run

    summary = run(settings_of(ctx), _ws(ctx), events=events, users=users, items=items)
    for line in summary.lines():
        typer.echo(line)


def _day(value: str):
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"DAY must be YYYY-MM-DD, got {value!r}") from None


@app.command()
def validate(ctx: typer.Context, day: str = typer.Argument(..., help="YYYY-MM-DD")) -> None:
    """Run the day's Great Expectations checkpoint; exit 3 naming each failed expectation."""
    from validation import raise_if_failed, validate_day

    report = validate_day(settings_of(ctx), _ws(ctx), _day(day))
    typer.echo(report.format())
    raise_if_failed(report)


@app.command("full-update")
def full_update(ctx: typer.Context, day: str = typer.Argument(..., help="YYYY-MM-DD")) -> None:
    """Nightly full update of DAY: validate, prepare, train, export, evaluate, publish (resumable)."""
    from twotower.full_update import run

    result = run(settings_of(ctx), _ws(ctx), _day(day), log=typer.echo)
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items() if k.startswith("recall"))
    typer.echo(f"serving {result.generation} (day {result.day}, parent {result.parent or '-'}): {metrics}")
