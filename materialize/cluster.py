"""The Dask client every batch job runs on.

A LocalCluster of worker *processes* (``spawn``: TensorFlow deadlocks in forked children), or
an existing scheduler when ``dask.scheduler_address`` is configured. A job known to be small
(fewer input events than ``dask.processes_from_events``) gets a LocalCluster whose workers are
threads of the calling process instead: the same scheduler and tasks, without a spawn and a
TensorFlow import per worker. Workers and scheduler bind to loopback; no dashboard is started
(the scheduler's health/metrics HTTP server listens on a random loopback port).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import dask
from distributed import Client, LocalCluster

from twotower.adapters import dask_tokens  # noqa: F401  (fast tokens for list columns in every Dask job)
from twotower.core.config import DaskSettings

# Worker processes import the project (and TensorFlow) fresh: never fork a process that has
# already initialised TF threads.
dask.config.set({"distributed.worker.multiprocessing-method": "spawn"})
# Our frames carry list columns (tags, interest tags); Dask must not turn object columns into
# strings when it partitions a pandas frame.
dask.config.set({"dataframe.convert-string": False})


def use_processes(settings: DaskSettings, events: int | None) -> bool:
    """Worker processes unless the job is known to be smaller than ``processes_from_events``."""
    return events is None or events >= settings.processes_from_events


@contextmanager
def dask_client(settings: DaskSettings, events: int | None = None) -> Iterator[Client]:
    """``events``: the size of the job's input, when known (None = assume large)."""
    if settings.scheduler_address:
        client = Client(settings.scheduler_address, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
        return
    processes = use_processes(settings, events)
    cluster = LocalCluster(
        n_workers=settings.n_workers,
        threads_per_worker=settings.threads_per_worker,
        processes=processes,
        memory_limit=settings.memory_limit,
        # Processes talk TCP on loopback; threads use Dask's in-process transport (no socket).
        **({"host": "127.0.0.1"} if processes else {}),
        dashboard_address=None,
        # The scheduler's small HTTP server (health/metrics) starts even without a dashboard:
        # a random loopback port, so parallel clusters do not fight over 8787.
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.WARNING,
    )
    client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


class LazyClient:
    """A client started on first use and closed by ``close()``: a run whose steps are all
    already done (resume) starts no cluster, and steps of one run share one cluster."""

    def __init__(self, settings: DaskSettings, events: int | None = None):
        self.settings, self.events = settings, events
        self._cm = None
        self._client: Client | None = None

    def get(self) -> Client:
        if self._client is None:
            self._cm = dask_client(self.settings, self.events)
            self._client = self._cm.__enter__()
        return self._client

    def close(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = self._client = None
