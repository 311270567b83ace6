"""Load during a real publish: `twotower serve --workers 2` answers every request, and never
with a mixed generation, while `twotower full-update DAY` publishes the next generation.

The shared world's second generation is taken back to "built but not published" (its
directory becomes the day's work directory again, CURRENT rolls back to g1, its online slot is
overwritten with rows stamped by nobody), so the real command resumes the day and really
publishes: validate, ID embeddings materialized into the other slot, rename, flip. Keep-alive
clients hammer GET and POST /recall throughout; bench/publish_load.py checks every answer
(see its docstring for what "no mixed generation" means with two independently swapping
workers). bench/bench_load.py is the 60 s, 5k-user version of the same run.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from serving_support import REPO, TWOTOWER, copy_world, free_port, running, shared_world
from twotower import feature_store
from twotower.core import generations as gens
from twotower.pipelines.day import DayWork

sys.path.insert(0, str(REPO))
from bench import publish_load  # noqa: E402

pytestmark = pytest.mark.slow  # started first (conftest): a long file must not end the run alone

K = 20
UNKNOWN = [123_456_789_012, 123_456_789_013]


def unpublish_latest(settings, ws) -> tuple[str, str]:
    """Make the served generation "built, not published": its directory back to the day's work
    directory (as if the update had stopped before its publish step), CURRENT rolled back, and
    its online slot overwritten with rows no generation stamped (the publish must rewrite them)."""
    ptr = gens.read_pointer(ws)
    new = gens.load(ws, ptr.current)
    gens.rollback(ws)
    work = DayWork(ws, new.day).root
    work.parent.mkdir(parents=True, exist_ok=True)
    gens.directory(ws, new.id).rename(work)
    (work / gens.MANIFEST).unlink()
    (work / "publish.json").unlink()
    users = pd.read_parquet(work / "user_id_embedding.parquet", columns=["user_id"])["user_id"]
    stale = datetime.combine(new.day, datetime.min.time(), tzinfo=timezone.utc) - timedelta(days=1)
    feature_store.store(settings, ws).write_to_online_store("user_id_embedding", pd.DataFrame({
        "user_id": users, "embedding_slot": new.embedding_slot,
        "embedding": [np.zeros(settings.model.id_embedding_dim, np.float32)] * len(users),
        "generation": "unpublished", "event_timestamp": stale, "created_timestamp": stale,
    }))  # fmt: skip
    return ptr.history[-2], new.id


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    _, ws0, ids = shared_world(tmp_path_factory)
    settings, ws = copy_world(ws0, tmp_path_factory.mktemp("load_publish") / "ws")
    g1, g2 = unpublish_latest(settings, ws)
    assert (g1, g2) == tuple(ids) and gens.read_pointer(ws).current == g1
    return settings, ws, g1, g2


def pinned_expectations(settings, ws, generation, requests, hours):
    from serving.online import reader
    from serving.retriever import pinned

    read = reader(feature_store.store(settings, ws))
    retriever = pinned(settings, ws, generation, read)
    try:
        return publish_load.expected(retriever, requests, K, hours)
    finally:
        retriever.close()


def test_publish_under_load_never_fails_or_mixes_generations(world):
    settings, ws, g1, g2 = world
    rng = np.random.default_rng(0)
    known = pd.read_parquet(gens.directory(ws, g1) / "user_id_embedding.parquet")["user_id"].head(40).tolist()
    day2 = gens.load(ws, g1).day + timedelta(days=1)
    users = pd.read_parquet(ws.users_path, columns=["user_id", "event_timestamp"])
    newcomers = users.loc[users["event_timestamp"].dt.date == day2, "user_id"].head(5).tolist()
    pool = known + newcomers + UNKNOWN
    batches = [rng.choice(pool, 6, replace=False).tolist() for _ in range(8)]
    requests = publish_load.build_requests(pool, batches, K)

    env = dict(os.environ, TWOTOWER_WORKSPACE=str(ws.root), TWOTOWER_SERVING__POLL_INTERVAL_S="0.2",
               TWOTOWER_FULL_UPDATE__PROMOTION_MIN_RATIO="0")  # fmt: skip
    port = free_port()
    serve = [str(TWOTOWER), "serve", "--port", str(port), "--workers", "2"]
    now = datetime.now(timezone.utc)
    hours = {now.hour, (now + timedelta(minutes=10)).hour}
    before = pinned_expectations(settings, ws, g1, requests, hours)
    with running(serve, f"http://127.0.0.1:{port}/health", ws.root / "serve.log", env=env):
        run = publish_load.run_load(
            port, requests, concurrency=4, publish_cmd=[str(TWOTOWER), "full-update", day2.isoformat()],
            publish_env=env, pointer=ws.generations_dir / gens.POINTER, old_generation=g1,
            log_path=ws.root / "full_update.log", publish_at=0.5, min_seconds=0, tail_s=3.0, max_seconds=240,
            pause_s=0.02,  # ~200 req/s: leaves the publish CPU on 2 shared cores
        )  # fmt: skip
    log = (ws.root / "full_update.log").read_text()
    assert run.publish_rc == 0 and run.new_generation == g2, log[-3000:]
    assert "publish: now serving" in log and "== train: already done" in log  # resumed, really published

    hours |= publish_load.hours_of(run)
    expect = {
        g1: [before, pinned_expectations(settings, ws, g1, requests, hours)],
        g2: [pinned_expectations(settings, ws, g2, requests, hours)],
    }
    checks = publish_load.check(run, requests, g1, g2, expect)
    assert checks["problems"] == [], checks
    assert checks["errors"] == 0 and checks["inconsistent"] == 0 and checks["went_back_on_a_connection"] == 0
    by_gen = checks["answers_by_generation"]
    assert by_gen[g1] > 100 and by_gen[g2] > 50, by_gen
    # Each worker swaps within a few poll intervals of the flip.
    assert checks["flip_to_first_new_answer_s"] < 3.0 and checks["flip_to_last_old_answer_s"] < 5.0, checks
    # The publish really wrote g2's ID embeddings (the slot held "unpublished" rows before):
    # g2 answers for users of its table come from their own embedding.
    mine = set(known)
    new_paths = [p for a in run.answers if a.generation == g2 for u, p in zip(requests[a.request].users, a.paths) if u in mine]
    assert new_paths and set(new_paths) == {"embedding"}, set(new_paths)
    stats = publish_load.summary(run, requests)
    assert stats["phases"]["swap_window"]["requests"] > 20 and stats["phases"]["swap_window"]["errors"] == 0

