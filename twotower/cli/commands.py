"""CLI subcommands: parse options, call the stage module, print a short summary."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from twotower.cli.app import app, settings_of
from twotower.core.workspace import Workspace

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
    from twotower.research.simulate import simulate as run

    s = run(settings_of(ctx), _ws(ctx), users=users, items=items, days=days, seed=seed, force=force)
    typer.echo(
        f"simulated {len(s.days)} days: {s.users:,} users, {s.items:,} items, {s.events:,} events "
        f"({s.clicks:,} clicks) in {s.seconds:.1f}s = {s.events_per_second:,.0f} events/s"
    )


@app.command()
def init(
    directory: Path = typer.Argument(..., help="A new (or empty) directory: the workspace to create."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the sample data."),
) -> None:
    """Create a workspace with a feature repo of your own (string IDs, one feature of each kind) and sample data."""
    from twotower.cli.init import init as run

    for line in run(directory, seed=seed):
        typer.echo(line)


@feast_app.command("apply")
def feast_apply(ctx: typer.Context) -> None:
    """`feast apply` of feature_repo/ against this workspace."""
    from twotower import feature_store

    typer.echo(feature_store.apply(settings_of(ctx), _ws(ctx), force=True).strip())


@feast_app.command("materialize")
def feast_materialize(
    ctx: typer.Context,
    end: Optional[datetime] = typer.Option(None, help="Materialize up to this time (default: now, UTC)."),
    view: Optional[list[str]] = typer.Option(None, "--view", help="Feature view(s); default all."),
) -> None:
    """`feast materialize-incremental` into the online store."""
    from materialize import online

    end = (end or datetime.now(timezone.utc)).replace(tzinfo=end.tzinfo if end and end.tzinfo else timezone.utc)
    online.materialize(settings_of(ctx), _ws(ctx), end, view or None)
    typer.echo(f"materialized {', '.join(view) if view else 'all views'} up to {end.isoformat()}")


@feast_app.command("yaml")
def feast_yaml(ctx: typer.Context) -> None:
    """Write and print the path of the effective feature_store.yaml (for `feast -f PATH ...`)."""
    from twotower import feature_store

    typer.echo(feature_store.prepare(settings_of(ctx), _ws(ctx)))


@app.command()
def demo(ctx: typer.Context) -> None:
    """Run the daily cycle on a small simulated world and show a result (idempotent)."""
    from twotower.cli import demo as run

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
    from twotower.core import generations as gens

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


@app.command()
def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """What an operator checks first: served generation, index, last gate, incremental chain,
    one recall through the online store. Exit 1 when a check needs action."""
    from twotower.pipelines.status import as_json as json_of, status as checks_of

    checks = checks_of(settings_of(ctx), _ws(ctx))
    if as_json:
        typer.echo(json_of(checks))
    for c in [] if as_json else checks:
        typer.echo(f"{c.name:<12} {'ok ' if c.ok else 'ACT'} {c.line}")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@generations_app.command("rollback")
def generations_rollback(ctx: typer.Context) -> None:
    """Serve the previously published generation again."""
    from twotower.core import generations as gens
    from twotower.index import milvus_index

    ws = _ws(ctx)
    ptr = gens.read_pointer(ws)
    if ptr is not None and len(ptr.history) >= 2:  # a Milvus generation must still have its collection
        back = gens.load(ws, ptr.history[-2])
        milvus_index.check_servable(gens.directory(ws, back.id) / back.paths["index"])
    ptr = gens.rollback(ws)
    milvus_index.follow_current(ws, settings_of(ctx).index.milvus_prefix, drop=False)
    typer.echo(f"now serving {ptr.current}")


@app.command()
def ingest(
    ctx: typer.Context,
    events: Optional[Path] = typer.Option(None, help="Events file (CSV or parquet)."),
    users: Optional[Path] = typer.Option(None, help="Users file (CSV or parquet)."),
    items: Optional[Path] = typer.Option(None, help="Items file (CSV or parquet)."),
) -> None:
    """Bring your own data into the offline store (schema: docs/data-schema.md). All or nothing."""
    from twotower import feature_store
    from twotower.ingest.job import ingest as run

    settings, ws = settings_of(ctx), _ws(ctx)
    spec = feature_store.read_spec(settings, ws)  # the columns and ID types the files are read under
    summary = run(settings, ws, spec, events=events, users=users, items=items)
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
    from twotower import feature_store
    from validation import raise_if_failed, validate_day

    settings = settings_of(ctx)
    ws = _ws(ctx)
    report = validate_day(settings, ws, _day(day), feature_store.read_spec(settings, ws))
    typer.echo(report.format())
    raise_if_failed(report)


@app.command("full-update")
def full_update(
    ctx: typer.Context,
    day: str = typer.Argument(..., help="YYYY-MM-DD"),
    fresh: bool = typer.Option(False, "--fresh", help="Train a new model instead of warm-starting from the served "
                               "one (needed when the feature repo's tower inputs changed)."),
) -> None:
    """Nightly full update of DAY: validate, prepare, train, export, evaluate, publish (resumable)."""
    from twotower.pipelines.full_update import run

    result = run(settings_of(ctx), _ws(ctx), _day(day), fresh=fresh)
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items() if k.startswith("recall"))
    typer.echo(f"serving {result.generation} (day {result.day}, parent {result.parent or '-'}): {metrics}")


@app.command()
def backfill(
    ctx: typer.Context,
    start: str = typer.Argument(..., help="first day of history, YYYY-MM-DD"),
    end: str = typer.Argument(..., help="last day of history, YYYY-MM-DD: the generation's day"),
    epochs: Optional[int] = typer.Option(None, min=1, help="passes over the history (default: full_update.backfill_epochs)"),
    fresh: bool = typer.Option(False, "--fresh", help="Replace the served generation's model by one trained on history."),
) -> None:
    """Bootstrap the first generation from history: every day START..END gated and prepared, one
    model trained on all of them shuffled, published like a nightly generation (full updates go on from it)."""
    from twotower.pipelines.full_update import backfill as run

    result = run(settings_of(ctx), _ws(ctx), _day(start), _day(end), epochs=epochs, fresh=fresh)
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items() if k.startswith("recall"))
    typer.echo(f"serving {result.generation} (day {result.day}, from {start}, parent {result.parent or '-'}): {metrics}")


@app.command()
def serve(
    ctx: typer.Context,
    host: Optional[str] = typer.Option(None, help="Interface to bind (default: serving.host, 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, min=1, max=65535, help="Port (default: serving.port)."),
    workers: Optional[int] = typer.Option(None, min=1, help="uvicorn worker processes (default: serving.workers)."),
) -> None:
    """Serve the recall HTTP API (/recall, /health, /generation, /metrics, /docs) of the current generation."""
    from serving.run import serve as run

    run(settings_of(ctx), host=host, port=port, workers=workers)


def _user_id(value: str) -> int:
    try:
        uid = int(value)
    except ValueError:
        raise typer.BadParameter(f"USER must be an int64 user ID, got {value!r}") from None
    if not -(2**63) <= uid < 2**63:
        raise typer.BadParameter(f"USER {value} is out of the int64 range")
    return uid


@app.command()
def recall(
    ctx: typer.Context,
    user: str = typer.Argument(..., help="User ID, as the feature repo's user entity types it (Int64 or String)."),
    k: Optional[int] = typer.Option(None, "-k", "--k", help="Items to return (default: serving.default_k)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    exclude_seen: Optional[bool] = typer.Option(None, "--exclude-seen/--include-seen",
                                                help="Leave out the user's recently clicked items (default: serving.exclude_seen)."),
) -> None:
    """Recall one user's top-k in-process: items, scores, generation and path (embedding/oov_profile/popular)."""
    from serving.run import recall as run

    for line in run(settings_of(ctx), user, k, as_json=as_json, exclude_seen=exclude_seen):
        typer.echo(line)


@app.command()
def emit(
    ctx: typer.Context,
    day: Optional[str] = typer.Option(None, "--day", help="Replay this day of the offline store (YYYY-MM-DD) in time order."),
    user: Optional[str] = typer.Option(None, "--user", help="A user (int64 ID) who clicks items now (with --category)."),
    category: Optional[int] = typer.Option(None, "--category", help="With --user: the category of the clicked items."),
    count: int = typer.Option(10, "--count", min=1, help="With --user: how many items the user clicks."),
    seed: Optional[int] = typer.Option(None, "--seed", help="With --user: random seed of the shown items."),
) -> None:
    """Append events to the event stream: a replayed day, or one user's clicks with current timestamps."""
    from twotower.core.errors import UserError
    from twotower.research.simulate.clicks import emit_user
    from twotower.stream.emit import emit_day

    if (day is None) == (user is None):
        raise UserError("give either --day DAY or --user USER --category C [--count N]")
    if day is not None:
        if category is not None:
            raise UserError("--category goes with --user, not with --day")
        typer.echo(emit_day(settings_of(ctx), _ws(ctx), _day(day)).line())
        return
    if category is None:
        raise UserError("--user needs --category (the category of the items the user clicks)")
    typer.echo(emit_user(settings_of(ctx), _ws(ctx), _user_id(user), category, count, seed=seed).line())


@app.command()
def incremental(
    ctx: typer.Context,
    follow: bool = typer.Option(False, "--follow", help="Keep consuming new events until SIGTERM/Ctrl-C (default: drain the stream, then exit)."),
    batch_seconds: Optional[float] = typer.Option(None, "--batch-seconds", min=0, help="--follow: start a micro-batch at most this often (default: incremental.batch_seconds)."),
    max_events: Optional[int] = typer.Option(None, "--max-events", min=1, help="Stream entries per micro-batch at most (default: incremental.max_events)."),
    publish_every: Optional[float] = typer.Option(None, "--publish-every", min=0, help="Seconds between pushes to the online store; 0 = after every micro-batch (default: incremental.publish_every)."),
) -> None:
    """Intraday update: train the served generation's ID embeddings on new events, push them online."""
    from twotower.pipelines.incremental import run

    summary = run(
        settings_of(ctx), _ws(ctx), follow=follow, batch_seconds=batch_seconds, max_events=max_events,
        publish_every=publish_every,
    )  # fmt: skip
    for line in summary.lines():
        typer.echo(line)


@app.command()
def replay(
    ctx: typer.Context,
    days: Optional[int] = typer.Option(None, "--days", min=2, help="Simulated days per seed; day 1 trains the first model (default: replay.days)."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Worlds to replay, for mean and spread (default: replay.seeds)."),
    first_seed: Optional[int] = typer.Option(None, "--first-seed", help="Seed of the first world (default: replay.first_seed)."),
    users: Optional[int] = typer.Option(None, "--users", min=10, help="Users per world (default: replay.users)."),
    items: Optional[int] = typer.Option(None, "--items", min=10, help="Items per world (default: replay.items)."),
    step_minutes: Optional[int] = typer.Option(None, "--step-minutes", min=1, help="Replay step in minutes, dividing a day (default: replay.step_minutes)."),
    readme: Optional[Path] = typer.Option(None, "--readme", help="Rewrite the table between <!-- replay:start --> and <!-- replay:end --> in this file."),
    fresh: bool = typer.Option(False, "--fresh", help="Re-simulate and replay every seed even if nothing changed."),
) -> None:
    """Day-replay experiment: full+incremental vs full only / incremental only / time-ordered / no update."""
    from twotower.research.replay import results_path, run

    ws = _ws(ctx)
    run(
        settings_of(ctx), ws, days=days, seeds=seeds, first_seed=first_seed, users=users, items=items,
        step_minutes=step_minutes, readme=readme, fresh=fresh,
    )  # fmt: skip
    typer.echo(results_path(ws).with_suffix(".md").read_text())


@app.command()
def report(ctx: typer.Context) -> None:
    """Write the HTML report (gate, generations, replay, freshness, serving) to <workspace>/reports/."""
    from twotower.report import write_report

    typer.echo(write_report(settings_of(ctx), _ws(ctx)))
