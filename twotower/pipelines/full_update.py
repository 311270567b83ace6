"""``twotower full-update DAY``: features -> validate -> prepare -> train -> export -> evaluate -> publish.

The nightly half of the seed. Every step writes into a work directory for the day
(``<workspace>/work/DAY``) atomically and is skipped when its output is already there, so a
crashed run (even kill -9) is completed by running the same command again. Nothing is visible
to serving until the last step: the work directory becomes ``generations/<id>`` by one rename
and ``CURRENT`` is flipped. Training warm-starts from the *served full* generation's
checkpoint (never from incremental state, which lives elsewhere and is discarded).
"""

from __future__ import annotations

import logging
import shutil
from datetime import date

from materialize.cluster import LazyClient
from twotower.core import generations as gens
from twotower.core.config import Settings
from twotower.core.errors import UserError
from twotower.core.workspace import Workspace
from twotower.pipelines import full_update_steps as steps
from twotower.pipelines.day import DayWork, FullUpdateResult, PromotionRefused
from twotower.report import write_report

logger = logging.getLogger(__name__)

__all__ = ["FullUpdateResult", "PromotionRefused", "backfill", "run"]


def run(settings: Settings, ws: Workspace, day: date, fresh: bool = False) -> FullUpdateResult:
    """The day's full update. ``fresh``: train from scratch instead of warm-starting from the
    served generation (its tower inputs no longer match the repo); it stays the new one's parent."""
    return _run(settings, ws, [day], fresh=fresh, epochs=1)


def backfill(settings: Settings, ws: Workspace, start: date, end: date, epochs: int | None = None,
             fresh: bool = False) -> FullUpdateResult:  # fmt: skip
    """Bootstrap from history: the first generation (day ``end``), trained from scratch on every
    day from ``start`` to ``end``, each one gated and prepared like a nightly day, shuffled
    together for ``epochs`` passes (default ``full_update.backfill_epochs``). It is published
    as an ordinary generation: the next day's full update warm-starts from it. A served
    generation is replaced only with ``fresh`` (it becomes the parent and the promotion check
    compares the two)."""
    if start > end:
        raise UserError(f"START {start} is after END {end}")
    days = [d for d in ws.days() if start <= d <= end]
    if end not in days:
        raise UserError(f"END {end}: no events in {ws.events_dir} (have: {', '.join(map(str, ws.days())) or 'none'})")
    served = gens.current(ws)
    if served is not None and not fresh:
        raise UserError(f"backfill trains the first generation, but {served.id} is served: continue with "
                        f"`twotower full-update`, or start a new model from history with --fresh")  # fmt: skip
    return _run(settings, ws, days, fresh=True, epochs=epochs or settings.full_update.backfill_epochs)


def _run(settings: Settings, ws: Workspace, days: list[date], fresh: bool, epochs: int) -> FullUpdateResult:
    day = days[-1]
    served = gens.current(ws)
    if served is not None and served.day >= day:
        if served.day == day:
            logger.info(f"{day} is already published as {served.id}; nothing to do")
            return FullUpdateResult(day, served.id, served.parent, served.metrics)
        raise UserError(f"DAY {day} is before the served generation's day {served.day}; full updates move forward")
    if day not in ws.days():
        raise UserError(f"DAY {day}: no events in {ws.events_dir} (have: {', '.join(map(str, ws.days())) or 'none'})")

    pending = steps.unflipped(ws, day, served)
    if pending is not None:  # killed between the rename and the flip: finish the publish
        gens.flip(ws, pending.id)
        logger.info(f"publish: {pending.id} was complete but not served; now serving it")
        return FullUpdateResult(day, pending.id, pending.parent, pending.metrics)
    work = DayWork(ws, day)
    if _other_run(work, days, epochs):
        logger.info(f"{work.root} was trained on other days or epochs; starting the day's work afresh")
        shutil.rmtree(work.root)
    result = FullUpdateResult(day, "", served.id if served else None)
    step = steps.Steps(result.steps)
    dask = LazyClient(settings.dask, _events(ws, days))
    try:
        spec = step("features", steps.features, settings, ws, served, fresh)
        for d in days:
            step("validate", steps.validate, settings, ws, d, spec)
        work.root.mkdir(parents=True, exist_ok=True)
        prepared = {d: step("prepare", steps.prepare, settings, ws, d, dask, spec) for d in days}
        step("train", steps.train, settings, ws, work, prepared, None if fresh else served, spec, epochs,
             done=work.checkpoint.exists() and work.training.exists())  # fmt: skip
        step("export", steps.export, settings, ws, work, prepared[day], dask,
             done=all(p.exists() for p in (work.index, work.user_tower, work.embeddings, work.popular)))  # fmt: skip
        dask.close()
        step("evaluate", steps.evaluate, settings, ws, work, prepared[day], served, done=work.metrics.exists())
        result.metrics = work.read_json(work.metrics)["metrics"]
        result.generation = step("publish", steps.publish, settings, ws, work, served)
    finally:
        dask.close()
    # the report never fails the update: it reports what it finds
    logger.info(f"report: {write_report(settings, ws)}")
    return result


def _events(ws: Workspace, days: list[date]) -> int:
    """The days' events, from the parquet footers (what sizes the Dask cluster)."""
    import pyarrow.dataset as pads

    return sum(pads.dataset(ws.events_day_dir(d), format="parquet").count_rows() for d in days)


def _other_run(work: DayWork, days: list[date], epochs: int) -> bool:
    """The day's work directory holds a model trained on other days or epochs (a backfill after a
    killed nightly run of the same day, or the reverse): none of it may be resumed."""
    if not work.training.exists():
        return False
    done = work.read_json(work.training)
    return done.get("days", [str(days[-1])]) != [str(d) for d in days] or done.get("epochs", 1) != epochs
