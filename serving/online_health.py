"""Serving without the online store: what serving knows of its health, and when to try again.

When the online store cannot answer (Redis stopped or hung, the SQLite file locked), a request
is not failed: every user of it gets the served generation's popular items (the ``popular``
path) and the response's ``degraded`` field says why. The generation still serves it - the
popular items are the generation's own - so a request stays on one generation (invariant 1).

Each store call is bounded (``online_store.timeout_s``, and serving never lets redis-py retry
with its multi-second backoff, see ``serving.online.bound_waits``). After a failure the store is
not asked again for ``serving.online_retry_s``: a hung store costs one bounded wait per
interval, not one per request, and every request in between is answered at once. The first
request (or ``/health`` probe) after the interval tries again; when it succeeds, serving is
back on the normal paths - no restart, nothing to reload.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass
class Outage:
    error: str  # the last failure, named (type and message)
    since: float  # wall time of the first failure of this outage
    failures: int  # failed calls in this outage


class OnlineHealth:
    def __init__(self, retry_s: float, store: str):
        self.retry_s, self.store = retry_s, store
        self.outage: Outage | None = None
        self.failures = 0  # failed calls since start (what /metrics counts)
        self._retry_at = 0.0
        self._lock = threading.Lock()

    @property
    def ok(self) -> bool:
        return self.outage is None

    def should_try(self) -> bool:
        """False while a recent failure says the store is down and the retry is not due."""
        return self.outage is None or time.monotonic() >= self._retry_at

    def failed(self, error: str) -> str:
        """Record a failed call; returns the reason requests are told."""
        with self._lock:
            self.failures += 1
            if self.outage is None:
                self.outage = Outage(error, time.time(), 1)
            else:
                self.outage.error, self.outage.failures = error, self.outage.failures + 1
            self._retry_at = time.monotonic() + self.retry_s
        return self.reason()

    def succeeded(self) -> None:
        if self.outage is not None:
            with self._lock:
                self.outage = None

    def reason(self) -> str | None:
        outage = self.outage
        return None if outage is None else f"online store ({self.store}) unavailable: {outage.error}"

    def describe(self) -> dict:
        outage = self.outage
        out: dict = {"type": self.store, "ok": outage is None, "failures": self.failures}
        if outage is not None:
            since = datetime.fromtimestamp(outage.since, tz=timezone.utc).isoformat()
            out.update(error=outage.error, since=since, outage_failures=outage.failures, retry_s=self.retry_s)
        return out
