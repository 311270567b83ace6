"""Batch jobs on an external Dask cluster: a scheduler and two workers started as processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twotower.core import generations as gens
from twotower.core.config import load_settings
from twotower.pipelines.full_update import run
from twotower.research.simulate import simulate
from twotower.core.workspace import Workspace

DASK = str(Path(sys.executable).with_name("dask"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster():
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                Client(address, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for name in ("w1", "w2"):
            procs.append(subprocess.Popen(
                [DASK, "worker", address, "--name", name, "--nthreads", "1", "--no-dashboard",
                 "--host", "127.0.0.1", "--memory-limit", "3GiB"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        with Client(address) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_full_update_runs_through_an_external_scheduler(tmp_path, cluster, monkeypatch):
    monkeypatch.setenv("TWOTOWER_DASK__SCHEDULER_ADDRESS", cluster)
    settings = load_settings(workspace=tmp_path / "ws")
    assert settings.dask.scheduler_address == cluster
    ws = Workspace(settings.workspace)
    simulate(settings, ws, users=200, items=150, days=1, seed=5)
    result = run(settings, ws, ws.days()[0])

    from distributed import Client

    with Client(cluster) as client:
        workers = client.scheduler_info()["workers"]
        names = {w["name"] for w in workers.values()}
        # Each worker ran tasks of the prepare and export jobs (scheduler-side task counts).
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert names == {"w1", "w2"}
    assert all(count > 0 for count in executed.values()), executed
    served = gens.current(ws)
    # The evaluation ran on held-out clicks (model quality itself is test_full_update's subject:
    # on 200 users x 150 items x 1 day, recall@10 is 0 in some runs).
    assert served.id == result.generation and served.metrics["heldout_clicks"] > 0
    assert 0 < served.metrics["recall@100"] <= 1
    gens.verify(ws, served)


def test_a_small_job_runs_on_worker_threads_a_large_one_on_worker_processes():
    """Below ``dask.processes_from_events`` the local cluster's workers are threads of this
    process (in-process transport, no spawn); from it on, spawned processes on loopback TCP."""
    import os

    from materialize.cluster import dask_client, use_processes
    from twotower.core.config import DaskSettings

    settings = DaskSettings(n_workers=1, processes_from_events=1_000)
    assert [use_processes(settings, n) for n in (999, 1_000, None)] == [False, True, True]
    assert use_processes(DaskSettings(processes_from_events=0), 1)
    for events, scheme, same_process in ((10, "inproc://", True), (5_000, "tcp://127.0.0.1:", False)):
        with dask_client(settings, events) as client:
            assert client.scheduler.address.startswith(scheme), client.scheduler.address
            (pid,) = client.run(os.getpid).values()
            assert (pid == os.getpid()) is same_process
