"""The online store goes away while serving: requests degrade to the popular items, never fail.

Through the real HTTP server (``twotower serve``) on Feast's Redis online store (a real
redis-server on loopback, with an RDB file so a crash keeps its data, as a production Redis
would). Two outages, one server process throughout:

* hung - ``CLIENT PAUSE``: Redis accepts connections but answers nothing. The first request
  waits at most ``online_store.timeout_s``; the ones after it, inside
  ``serving.online_retry_s``, are answered at once;
* dead - Redis is SIGKILLed (connection refused), then restarted on the same port from its RDB
  file.

During each: HTTP 200, ``path: popular`` with the generation's popular items and a ``degraded``
field naming the error, ``/health`` says degraded and why, the Prometheus failure counter moves.
After each: requests are back on the ``embedding`` path without restarting the server. The
SQLite store degrades the same way when its file is locked (in-process retriever).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from datetime import datetime, time as dtime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from serving_support import TWOTOWER, copy_world, free_port, running, shared_world
from twotower import feature_store
from twotower.core import generations as gens
from twotower.core.config import load_settings

TIMEOUT_S, RETRY_S = 0.5, 0.5


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_world(tmp_path_factory)


class RedisProcess:
    """A redis-server on 127.0.0.1:``port`` persisting to ``directory``/dump.rdb on demand."""

    def __init__(self, directory: Path, port: int):
        self.directory, self.port, self.proc = directory, port, None

    def start(self) -> "RedisProcess":
        import redis

        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                if client.ping() and client.info("persistence")["loading"] == 0:
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def crash(self) -> None:
        """Persist, then kill -9: the data survives as it would with Redis persistence on."""
        import redis

        redis.Redis(port=self.port).save()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@contextmanager
def redis_world(shared, tmp_path):
    """A copy of the shared world serving g2 from the Redis online store; yields (settings, ws, g2, redis)."""
    from materialize.user_embeddings import write_online

    _, ws0, (_g1, g2) = shared
    _, ws = copy_world(ws0, tmp_path / "ws")
    (tmp_path / "redis").mkdir()
    server = RedisProcess(tmp_path / "redis", free_port()).start()
    try:
        settings = load_settings(workspace=ws.root, online_store={"type": "redis", "redis_port": server.port})
        feature_store.apply(settings, ws)
        end = datetime.combine(gens.load(ws, g2).day, dtime(0), tzinfo=timezone.utc) + timedelta(days=1)
        # The copied registry remembers what was materialized into SQLite: load explicitly.
        feature_store.store(settings, ws).materialize(
            start_date=datetime(2000, 1, 1, tzinfo=timezone.utc), end_date=end, feature_views=["user_profile"]
        )
        write_online(settings, ws, g2)
        yield settings, ws, g2, server
    finally:
        server.stop()


def server_env(ws, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTOWER_")}
    env.update(
        TWOTOWER_WORKSPACE=str(ws.root), TWOTOWER_ONLINE_STORE__TYPE="redis", TWOTOWER_ONLINE_STORE__REDIS_PORT=str(port),
        TWOTOWER_ONLINE_STORE__TIMEOUT_S=str(TIMEOUT_S), TWOTOWER_ONLINE_STORE__CONNECT_TIMEOUT_S=str(TIMEOUT_S),
        TWOTOWER_SERVING__ONLINE_RETRY_S=str(RETRY_S),
    )  # fmt: skip
    return env


def timed_get(client: httpx.Client, url: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.get(url)
    return time.perf_counter() - started, response


def metric(text: str, name: str) -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


def wait_for_embedding(client: httpx.Client, url: str, timeout: float = 30) -> float:
    """Seconds until ``url`` is answered on the embedding path again."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        response = client.get(url)
        assert response.status_code == 200, response.text
        if response.json()["path"] == "embedding":
            return time.perf_counter() - started
        time.sleep(0.02)
    raise AssertionError(f"{url} did not recover within {timeout}s: {response.json()}")


def assert_degraded(response: httpx.Response, popular: list[int], error: str) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["path"] == "popular" and error in body["degraded"] and "redis" in body["degraded"], body
    assert [i["item_id"] for i in body["items"]] == popular[: len(body["items"])]


def test_redis_outages_degrade_to_popular_items_and_recover_without_restart(shared, tmp_path):
    import redis

    with redis_world(shared, tmp_path) as (settings, ws, g2, server):
        table = pd.read_parquet(gens.directory(ws, g2) / "user_id_embedding.parquet", columns=["user_id"])
        user = int(table.user_id.iloc[3])
        popular = pd.read_parquet(gens.directory(ws, g2) / "popular_items.parquet")["item_id"].astype(int).tolist()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/recall/{user}?k=10"
        cmd = [str(TWOTOWER), "serve", "--port", str(port)]
        with running(cmd, f"{base}/health", tmp_path / "serve.log", env=server_env(ws, server.port)) as proc, \
                httpx.Client(timeout=30) as client:  # fmt: skip
            body = client.get(url).json()
            assert body["path"] == "embedding" and body["generation"] == g2 and "degraded" not in body
            health = client.get(f"{base}/health").json()
            assert health["status"] == "ok" and health["online_store"] == {"type": "redis", "ok": True, "failures": 0}

            # 1. Hung: Redis takes connections and answers nothing for 3 s.
            redis.Redis(port=server.port).execute_command("CLIENT", "PAUSE", 3000, "ALL")
            paused_at = time.perf_counter()
            first, response = timed_get(client, url)
            assert_degraded(response, popular, "TimeoutError")
            assert TIMEOUT_S * 0.8 <= first < TIMEOUT_S + 1.5, f"a hung Redis held the request {first:.2f}s"
            during = [timed_get(client, url) for _ in range(5)]  # inside online_retry_s: no wait
            for _, r in during:
                assert_degraded(r, popular, "TimeoutError")
            fast = max(seconds for seconds, _ in during)
            batch = client.post(f"{base}/recall", json={"user_ids": [user, user + 1], "k": 5})
            assert batch.status_code == 200 and "TimeoutError" in batch.json()["degraded"], batch.text
            assert [r["path"] for r in batch.json()["results"]] == ["popular", "popular"]
            health = client.get(f"{base}/health").json()
            assert health["status"] == "degraded" and "TimeoutError" in health["online_store"]["error"], health
            text = client.get(f"{base}/metrics").text
            assert metric(text, "twotower_online_store_failures_total") >= 1
            assert metric(text, "twotower_online_store_up") == 0
            assert metric(text, "twotower_recall_degraded_users_total") >= 8
            time.sleep(max(0.0, 3.0 - (time.perf_counter() - paused_at)))
            recovered_hung = wait_for_embedding(client, url)
            assert recovered_hung < RETRY_S + TIMEOUT_S + 2, recovered_hung

            # 2. Dead: kill -9 (connections refused), then back on the same port with its data.
            failures_before = metric(client.get(f"{base}/metrics").text, "twotower_online_store_failures_total")
            server.crash()
            dead, response = timed_get(client, url)
            assert_degraded(response, popular, "ConnectionError")
            assert dead < TIMEOUT_S + 1.0, f"a dead Redis held the request {dead:.2f}s"
            time.sleep(RETRY_S)
            health = client.get(f"{base}/health").json()  # a due probe, refused again
            assert health["status"] == "degraded" and "ConnectionError" in health["online_store"]["error"], health
            text = client.get(f"{base}/metrics").text
            assert metric(text, "twotower_online_store_failures_total") >= failures_before + 2
            server.start()
            recovered_dead = wait_for_embedding(client, url)
            assert recovered_dead < RETRY_S + 2, recovered_dead
            health = client.get(f"{base}/health").json()
            assert health["status"] == "ok" and health["online_store"]["ok"], health

            text = client.get(f"{base}/metrics").text
            assert proc.poll() is None, "the server kept running throughout"
            assert 'status="500"' not in text, "no request failed"
            assert metric(text, "twotower_online_store_up") == 1
        print(
            f"\nredis outage: hung -> first degraded request {first * 1000:.0f} ms (timeout {TIMEOUT_S}s), "
            f"then {fast * 1000:.1f} ms max; recovered {recovered_hung:.2f}s after the pause ended. "
            f"dead -> degraded request {dead * 1000:.1f} ms; recovered {recovered_dead:.2f}s after restart"
        )


def test_a_locked_sqlite_store_degrades_the_same_way(shared, tmp_path):
    from serving.retriever import Retriever

    _, ws0, (_g1, g2) = shared
    _, ws = copy_world(ws0, tmp_path / "ws")
    settings = load_settings(workspace=ws.root, online_store={"timeout_s": 0.3}, serving={"online_retry_s": 0.2})
    user = int(pd.read_parquet(gens.directory(ws, g2) / "user_id_embedding.parquet")["user_id"].iloc[3])
    retriever = Retriever.open(settings, ws)
    healthy = retriever.recall(user, 10)
    assert healthy.path == "embedding" and healthy.degraded is None

    lock = sqlite3.connect(ws.feast_dir / "online_store.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # e.g. a writer holding the file
    try:
        started = time.perf_counter()
        got = retriever.recall(user, 10)
        waited = time.perf_counter() - started
        assert got.path == "popular" and "locked" in got.degraded and "sqlite" in got.degraded, got.degraded
        assert got.generation == g2 and np.array_equal(got.item_ids, retriever.current.popular_ids[:10])
        assert 0.25 <= waited < 2.0, f"waited {waited:.2f}s for the lock (online_store.timeout_s=0.3)"
        assert not retriever.check_online()["ok"] and retriever.online_health.failures == 1
    finally:
        lock.execute("COMMIT")
        lock.close()
    time.sleep(0.25)  # serving.online_retry_s
    back = retriever.recall(user, 10)
    assert back.path == "embedding" and back.degraded is None
    assert np.array_equal(back.item_ids, healthy.item_ids) and retriever.check_online()["ok"]
    retriever.close()


def test_a_missing_sqlite_store_degrades_instead_of_failing(shared, tmp_path):
    from serving.retriever import Retriever

    _, ws0, (_g1, g2) = shared
    _, ws = copy_world(ws0, tmp_path / "ws")
    (ws.feast_dir / "online_store.db").unlink()  # e.g. a wiped volume
    settings = load_settings(workspace=ws.root)
    retriever = Retriever.open(settings, ws)  # starts: the generation is on disk
    got = retriever.recall_batch([1, 2, 3], 5)
    assert [r.path for r in got.recalls] == ["popular"] * 3 and "no such table" in got.degraded, got.degraded
    assert got.generation == g2 and got.store_failed
    assert retriever.check_online()["error"].startswith("OperationalError")
    retriever.close()
