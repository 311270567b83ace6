"""The Dask client every batch job runs on.

A LocalCluster of worker *processes* by default (``spawn``: TensorFlow deadlocks in forked
children), or an existing scheduler when ``dask.scheduler_address`` is configured. Workers and
scheduler bind to loopback; no dashboard is started (the scheduler's health/metrics HTTP
server listens on a random loopback port).
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


@contextmanager
def dask_client(settings: DaskSettings) -> Iterator[Client]:
    if settings.scheduler_address:
        client = Client(settings.scheduler_address, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=settings.n_workers,
        threads_per_worker=settings.threads_per_worker,
        processes=True,
        memory_limit=settings.memory_limit,
        host="127.0.0.1",
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

    def __init__(self, settings: DaskSettings):
        self.settings = settings
        self._cm = None
        self._client: Client | None = None

    def get(self) -> Client:
        if self._client is None:
            self._cm = dask_client(self.settings)
            self._client = self._cm.__enter__()
        return self._client

    def close(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = self._client = None
