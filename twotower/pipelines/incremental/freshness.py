"""Freshness: how long from an event to the embedding that includes it being readable online.

For every pushed user, after the push the updater reads the row back from the online store
and takes the time of that read as *visible*. Two lags per user (seconds):

* ``event_to_visible``  - visible minus the event time of the newest event the embedding
  includes. The seed's freshness: what a user experiences. Large for replayed old events.
* ``append_to_visible`` - visible minus when the stream accepted that event. The pipeline's
  own latency, meaningful for replays too.

Rolling percentiles over the last ``window`` pushed users plus cumulative, Prometheus-style
histograms are written atomically (one JSON file, replaced after every publish) to
``<workspace>/stream/freshness.json``; format ``FORMAT`` (see ``snapshot``). The cumulative
counts continue from the file a previous run left, so they only grow (like counters).
"""

from __future__ import annotations

import json
import math
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from twotower.core.files import atomic_write_bytes

FORMAT = "twotower-freshness/1"
KINDS = ("event_to_visible_seconds", "append_to_visible_seconds")
BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0)  # seconds, "le"


def summary(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"count": int(len(values)), "mean": round(float(values.mean()), 4), "p50": round(float(p50), 4),
            "p95": round(float(p95), 4), "p99": round(float(p99), 4), "max": round(float(values.max()), 4)}  # fmt: skip


class Histogram:
    """Cumulative bucket counts (``le``), sum and count, as Prometheus keeps them."""

    def __init__(self, buckets=BUCKETS, counts=None, total: float = 0.0, count: int = 0):
        self.buckets = tuple(float(b) for b in buckets)
        self.counts = list(counts) if counts is not None else [0] * (len(self.buckets) + 1)  # last = +Inf
        self.sum, self.count = float(total), int(count)

    def observe(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        for i, b in enumerate(self.buckets):
            self.counts[i] += int((values <= b).sum())
        self.counts[-1] += len(values)
        self.sum += float(values.sum())
        self.count += len(values)

    def as_dict(self) -> dict:
        return {"buckets": self.counts, "sum": round(self.sum, 4), "count": self.count}


class FreshnessRecorder:
    def __init__(self, path: Path, window: int):
        self.path = Path(path)
        self.window = {k: deque(maxlen=window) for k in KINDS}
        self.histograms = {k: Histogram() for k in KINDS}
        self.totals: dict[str, int] = {}
        previous = self._previous()
        if previous:
            for k in KINDS:
                h = previous["histogram"].get(k)
                if h and len(h["buckets"]) == len(BUCKETS) + 1:
                    self.histograms[k] = Histogram(BUCKETS, h["buckets"], h["sum"], h["count"])

    def _previous(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if data.get("format") != FORMAT or [float(b) for b in data["histogram"]["le"][:-1]] != list(BUCKETS):
            return None
        return data

    def observe(self, event_to_visible: np.ndarray, append_to_visible: np.ndarray) -> None:
        for kind, values in zip(KINDS, (event_to_visible, append_to_visible)):
            values = np.asarray(values, dtype=np.float64)
            self.window[kind].extend(values.tolist())
            self.histograms[kind].observe(values)

    def stats(self) -> dict[str, dict]:
        return {k: summary(np.fromiter(self.window[k], dtype=np.float64)) for k in KINDS}

    def snapshot(self, **context) -> dict:
        """The file's content. ``context``: generation, slot, stream, totals, last_publish."""
        return {
            "format": FORMAT,
            "updated_at": datetime.now(timezone.utc).isoformat(),
            **context,
            "window": {"size": self.window[KINDS[0]].maxlen, **self.stats()},
            "histogram": {"le": [*BUCKETS, "+Inf"], **{k: h.as_dict() for k, h in self.histograms.items()}},
        }

    def write(self, **context) -> dict:
        data = self.snapshot(**context)
        atomic_write_bytes(self.path, json.dumps(data, indent=2, default=_plain).encode())
        return data


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    return str(value)
