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

__all__ = ["FullUpdateResult", "PromotionRefused", "run"]


def run(settings: Settings, ws: Workspace, day: date, fresh: bool = False) -> FullUpdateResult:
    """The day's full update. ``fresh``: train from scratch instead of warm-starting from the
    served generation (its tower inputs no longer match the repo); it stays the new one's parent."""
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
    result = FullUpdateResult(day, "", served.id if served else None)
    step = steps.Steps(result.steps)
    dask = LazyClient(settings.dask)
    try:
        spec = step("features", steps.features, settings, ws, served, fresh)
        step("validate", steps.validate, settings, ws, day, spec)
        work.root.mkdir(parents=True, exist_ok=True)
        prepared = step("prepare", steps.prepare, settings, ws, day, dask, spec)
        step("train", steps.train, settings, ws, work, prepared, None if fresh else served, spec,
             done=work.checkpoint.exists() and work.training.exists())  # fmt: skip
        step("export", steps.export, settings, ws, work, prepared, dask,
             done=all(p.exists() for p in (work.index, work.user_tower, work.embeddings, work.popular)))  # fmt: skip
        dask.close()
        step("evaluate", steps.evaluate, settings, ws, work, prepared, served, done=work.metrics.exists())
        result.metrics = work.read_json(work.metrics)["metrics"]
        result.generation = step("publish", steps.publish, settings, ws, work, served)
    finally:
        dask.close()
    # the report never fails the update: it reports what it finds
    logger.info(f"report: {write_report(settings, ws)}")
    return result
