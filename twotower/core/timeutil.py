"""Time, as the platform stores it: int64 microseconds since the epoch, UTC."""

from __future__ import annotations

from datetime import date, datetime, time, timezone

import numpy as np
import pandas as pd

US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND
US_PER_HOUR = 60 * US_PER_MINUTE
US_PER_DAY = 24 * US_PER_HOUR


def to_us(timestamps) -> np.ndarray:
    """Microseconds since the epoch of datetimes (a pandas Series/Index, a numpy or Arrow
    array; naive values are UTC), whatever their unit."""
    s = pd.Series(timestamps) if not isinstance(timestamps, pd.Series) else timestamps
    if not pd.api.types.is_datetime64_any_dtype(s):
        raise TypeError(f"expected timestamps, got {s.dtype}")
    return s.dt.as_unit("us").astype("int64").to_numpy(np.int64)


def datetime_us(moment) -> int:
    """Microseconds since the epoch of one datetime or pandas Timestamp (naive = UTC)."""
    return pd.Timestamp(moment).value // 1000  # .value: nanoseconds since the epoch, UTC


def day_start_us(day: date) -> int:
    """Microseconds since the epoch at 00:00 UTC of ``day``."""
    return datetime_us(datetime.combine(day, time(0), tzinfo=timezone.utc))
