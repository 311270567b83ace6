"""The recall server exposes the incremental updater's freshness file on /metrics."""

from __future__ import annotations

import numpy as np

from serving.metrics import ServingMetrics
from twotower.pipelines.incremental.freshness import FreshnessRecorder


def test_freshness_histogram_and_lag_are_scraped(tmp_path):
    path = tmp_path / "freshness.json"
    assert b"freshness" not in ServingMetrics(freshness=path).render()[0], "no file, no series (and no error)"

    recorder = FreshnessRecorder(path, window=100)
    recorder.observe(np.array([0.1, 1.5, 3.0]), np.array([0.1, 0.2, 0.3]))
    recorder.write(stream={"lag_events": 7})
    text = ServingMetrics(freshness=path).render()[0].decode()
    assert 'twotower_incremental_freshness_seconds_count{kind="event_to_visible"} 3.0' in text
    assert 'twotower_incremental_freshness_seconds_bucket{kind="event_to_visible",le="+Inf"} 3.0' in text
    assert "twotower_incremental_freshness_seconds_sum{kind=\"event_to_visible\"} 4.6" in text
    assert "twotower_incremental_lag_events 7.0" in text

    path.write_text("{not json")
    assert b"freshness" not in ServingMetrics(freshness=path).render()[0], "a broken file never breaks /metrics"
