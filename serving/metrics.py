"""Prometheus metrics of the recall server (``GET /metrics``).

One ``CollectorRegistry`` per app (not the process-global one), so several apps in one process
(tests) do not collide and ``/metrics`` shows only serving's series. The served generation is
read at scrape time (a collector, not a gauge updated on swap), so it is never stale.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from serving.recall import PATHS
from twotower.core.files import atomic_write_bytes

# Request latency is sub-millisecond to a few ms: fine buckets there.
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
STAGE_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05)


class _GenerationCollector:
    """``twotower_serving_generation{generation,day,slot} 1`` for the generation being served."""

    def __init__(self, current: Callable[[], object | None]):
        self.current = current

    def collect(self):
        family = GaugeMetricFamily(
            "twotower_serving_generation", "1 for the generation being served", labels=["generation", "day", "slot"]
        )
        gen = self.current()
        if gen is not None:
            family.add_metric([gen.id, gen.manifest.day.isoformat(), str(gen.slot)], 1)
        yield family


class _FreshnessCollector:
    """The incremental updater's freshness (event -> embedding visible online), read at scrape
    time from the file it replaces atomically after each publish (``twotower-freshness/1``,
    see docs/incremental.md): the updater is another process, the file is their contract."""

    def __init__(self, path: Path | None):
        self.path = path

    def collect(self):
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            histogram = data["histogram"]
            bounds = [str(b) for b in histogram["le"]]
        except (OSError, ValueError, KeyError):
            return  # a missing or foreign file never breaks /metrics
        family = HistogramMetricFamily(
            "twotower_incremental_freshness_seconds",
            "Incremental updater: event (or append) time -> user embedding visible in the online store",
            labels=["kind"],
        )
        for key, h in histogram.items():
            if key != "le" and isinstance(h, dict) and len(h.get("buckets", ())) == len(bounds):
                family.add_metric([key.removesuffix("_seconds")], list(zip(bounds, h["buckets"])), sum_value=h["sum"])
        yield family
        lag = data.get("stream", {}).get("lag_events")
        if lag is not None:
            yield GaugeMetricFamily("twotower_incremental_lag_events", "Stream events not yet consumed", value=lag)


class _OnlineStoreCollector:
    """The online store as serving sees it (serving/online_health.py), read at scrape time:
    ``twotower_online_store_up`` and ``twotower_online_store_failures_total`` (failed calls of
    requests and /health probes alike)."""

    def __init__(self, health: Callable[[], object | None]):
        self.health = health

    def collect(self):
        health = self.health()
        if health is None:
            return
        yield GaugeMetricFamily(
            "twotower_online_store_up", "1 if the last online-store call succeeded, 0 while serving degraded",
            value=1 if health.ok else 0,
        )  # fmt: skip
        yield CounterMetricFamily(
            "twotower_online_store_failures", "Online-store calls that failed (timeout, refused, locked)",
            value=health.failures,
        )  # fmt: skip


class ServingMetrics:
    def __init__(
        self,
        current: Callable[[], object | None] = lambda: None,
        freshness: Path | None = None,
        online: Callable[[], object | None] = lambda: None,
    ) -> None:
        """``current``: returns the served LoadedGeneration (read at each scrape);
        ``freshness``: the incremental updater's freshness file, if any;
        ``online``: returns the retriever's OnlineHealth (None before it exists)."""
        r = self.registry = CollectorRegistry()
        r.register(_GenerationCollector(current))
        r.register(_FreshnessCollector(freshness))
        r.register(_OnlineStoreCollector(online))
        self.requests = Counter(
            "twotower_http_requests", "HTTP requests by route and status code", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "twotower_http_request_seconds", "HTTP request latency (server side)", ["route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.users = Counter(
            "twotower_recall_users", "Users recalled, by path (embedding / oov_profile / popular fallback)",
            ["path"], registry=r,
        )  # fmt: skip
        for path in PATHS:
            self.users.labels(path)
        self.mismatched = Counter(
            "twotower_recall_embedding_generation_mismatch",
            "Online ID embeddings ignored because another generation stamped them", registry=r,
        )  # fmt: skip
        self.degraded = Counter(
            "twotower_recall_degraded_users",
            "Users answered with the popular items because the online store could not be read", registry=r,
        )  # fmt: skip
        self.stage = Histogram(
            "twotower_recall_stage_seconds", "Time per recall batch in each stage", ["stage"],
            buckets=STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        self.swaps = Counter("twotower_generation_swaps", "Hot swaps to a newly published generation", registry=r)
        self.load_failures = Counter(
            "twotower_generation_load_failures", "Published generations that failed to load", registry=r
        )

    def observe_batch(self, result) -> None:
        for recall in result.recalls:
            self.users.labels(recall.path).inc()
        if result.mismatched:
            self.mismatched.inc(result.mismatched)
        if getattr(result, "degraded", None):
            self.degraded.inc(len(result.recalls))
        for stage, seconds in result.timings.items():
            self.stage.labels(stage).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def snapshot(self) -> dict:
        """The latency histograms as they stand (``LATENCY_FORMAT``): per HTTP route and per
        recall stage, cumulative bucket counts beside their upper bounds, count and sum."""
        return {"format": LATENCY_FORMAT, "http": _histograms(self.latency, "route"), "stages": _histograms(self.stage, "stage")}


LATENCY_FORMAT = "twotower-serving-latency/1"


def _histograms(histogram: Histogram, label: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for family in histogram.collect():
        for sample in family.samples:
            entry = out.setdefault(sample.labels[label], {"le": [], "buckets": [], "count": 0, "sum": 0.0})
            if sample.name.endswith("_bucket"):
                entry["le"].append(sample.labels["le"])
                entry["buckets"].append(int(sample.value))
            elif sample.name.endswith("_count"):
                entry["count"] = int(sample.value)
            elif sample.name.endswith("_sum"):
                entry["sum"] = float(sample.value)
    return out


class LatencySnapshots:
    """Writes this server process's latency histograms to ``<directory>/latency-<host>-<pid>.json``
    (atomically) every ``interval_s`` while requests came in, and once more at ``stop``: what
    the report shows as the workspace's real serving latency (each process has its own
    histograms - one per uvicorn worker - and the report adds them up). A thread, not a
    request: nothing a client sends decides what is written or where."""

    def __init__(self, metrics: ServingMetrics, directory: Path, interval_s: float, generation: Callable[[], str | None]):
        self.metrics, self.interval_s, self.generation = metrics, interval_s, generation
        self.path = Path(directory) / f"latency-{socket.gethostname()}-{os.getpid()}.json"
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-snapshots", daemon=True)
        self._written = -1

    def start(self) -> "LatencySnapshots":
        if self.interval_s > 0:
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.write()

    def write(self) -> None:
        data = self.metrics.snapshot()
        count = sum(h["count"] for h in data["http"].values())
        if count == self._written:
            return
        data.update(pid=os.getpid(), started_at=self.started_at, generation=self.generation(),
                    written_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))  # fmt: skip
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, json.dumps(data, indent=1).encode())
            self._written = count
        except OSError:
            pass  # a full or read-only disk must not take serving down; the next write tries again

    def stop(self) -> None:
        if self.interval_s > 0:
            self._stop.set()
            self._thread.join(timeout=5)
            self.write()
