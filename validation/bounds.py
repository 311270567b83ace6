"""The day-dependent bounds of the suites, as GX suite parameters.

The suites are fixed code; what changes from day to day (the day's time window, the band
around the reference day) is passed to the checkpoint run as ``$PARAMETER`` values, so the
stored suites never go stale and the results record the bounds that were applied.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone

from twotower.core.config import ValidationSettings
from validation.history import DayProfile


def day_window(day: date) -> tuple[datetime, datetime]:
    """[00:00 UTC of day, 00:00 UTC of the next day)."""
    start = datetime.combine(day, time(0), tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def _outward(rate: float, direction) -> float:
    """Round a bound to 6 decimals, away from the band's inside (never narrowing it)."""
    return direction(round(rate * 1e6, 3)) / 1e6


def parameters(
    cfg: ValidationSettings, day: date, previous: DayProfile | None, *, first_day: bool
) -> dict:
    """Suite parameters for ``day``. ``previous`` is the reference day (None when there is none:
    only the absolute sanity bounds apply); on the ``first_day`` of the store every ID is
    necessarily new, so the never-seen shares are not bounded."""
    start, end = day_window(day)
    rows_min, rows_max = cfg.min_events, cfg.max_events
    rate_min, rate_max = cfg.min_click_rate, cfg.max_click_rate
    if previous is not None:
        tol = cfg.row_count_tolerance
        rows_min = max(rows_min, math.floor(previous.rows * (1 - tol)))
        rows_max = min(rows_max, math.ceil(previous.rows * (1 + tol)))
        if previous.click_rate is not None:
            tol = cfg.click_rate_tolerance
            rate_min = max(rate_min, previous.click_rate * (1 - tol))
            rate_max = min(rate_max, previous.click_rate * (1 + tol))
    return {
        "day_start": start,
        "day_end": end,
        "events_min_rows": rows_min,
        "events_max_rows": rows_max,
        "click_rate_min": _outward(rate_min, math.floor),
        "click_rate_max": _outward(rate_max, math.ceil),
        "new_user_share_max": 1.0 if first_day else cfg.max_new_user_share,
        "new_item_share_max": 1.0 if first_day else cfg.max_new_item_share,
    }
