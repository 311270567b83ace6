"""The nightly full update end to end: real GX, real Dask, real Annoy, real Feast SQLite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from twotower import feature_store
from twotower.core import generations as gens
from twotower.core.config import load_settings
from twotower.core.errors import ValidationFailed
from twotower.pipelines.full_update import run
from twotower.core.workspace import Workspace

TWOTOWER = str(Path(sys.executable).with_name("twotower"))
WORLD = dict(users=300, items=200, days=3, seed=11)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A world with its first two days published (g1 <- g2); read-only, copy to change it."""
    from twotower.research.simulate import simulate

    settings = load_settings(workspace=tmp_path_factory.mktemp("published") / "ws")
    ws = Workspace(settings.workspace)
    simulate(settings, ws, **WORLD)
    days = ws.days()
    # Day one again, in another process and workspace, at the same time as the in-process run
    # below (test_the_same_day_gives_the_same_generation_in_another_process compares them).
    twin = tmp_path_factory.mktemp("twin") / "ws"
    shutil.copytree(ws.offline, twin / "offline")
    out = open(twin.parent / "full_update.log", "w")
    proc = subprocess.Popen([TWOTOWER, "-w", str(twin), "full-update", str(days[0])], stdout=out, stderr=subprocess.STDOUT)
    try:
        results = [run(settings, ws, day) for day in days[:2]]
    finally:
        TWIN.update(proc=proc, ws=Workspace(twin), log=twin.parent / "full_update.log")
    return settings, ws, results


TWIN: dict = {}


@pytest.fixture
def world_copy(published, tmp_path):
    _, ws, _ = published
    target = tmp_path / "ws"
    shutil.copytree(ws.root, target, symlinks=True)
    settings = load_settings(workspace=target)
    return settings, Workspace(settings.workspace)


def _online(settings, ws, user_ids, slot):
    store = feature_store.store(settings, ws)
    return store.get_online_features(
        features=["user_id_embedding:embedding", "user_id_embedding:generation"],
        entity_rows=[{"user_id": int(u), "embedding_slot": slot} for u in user_ids],
    ).to_dict()


def test_two_days_publish_a_warm_started_chain(published):
    settings, ws, (first, second) = published
    g1, g2 = gens.load(ws, first.generation), gens.load(ws, second.generation)
    assert gens.current(ws).id == g2.id
    assert (g1.parent, g2.parent) == (None, g1.id)
    assert (g1.embedding_slot, g2.embedding_slot) == (0, 1)
    training = [__import__("json").loads((gens.directory(ws, g.id) / "training.json").read_text()) for g in (g1, g2)]
    assert training[0]["warm_start_from"] is None and training[1]["warm_start_from"] == g1.id
    assert g2.vocab["users"] >= g1.vocab["users"] and g2.vocab["items"] > g1.vocab["items"], "vocabularies grow"
    assert g2.metrics["ann_recall@100_vs_exact"] >= settings.index.target_recall
    assert g2.index["search_k"] > 0
    for g in (g1, g2):
        gens.verify(ws, g)
    assert first.steps.keys() >= {"validate", "prepare", "train", "export", "evaluate", "publish"}


def test_a_day_of_training_beats_its_parent_and_chance_on_the_same_held_out_clicks(published):
    """Baselines measured on the same held-out clicks of day two: the parent model (day one's)
    and chance (K of all items). Popularity is measured beside them (``popularity_recall@K``):
    on this 300-user, 2-day world it still wins; the real-data benchmark is where it is the bar."""
    settings, ws, (_, second) = published
    g2 = gens.load(ws, second.generation)
    for k in (10, 50, 100):
        assert g2.metrics[f"recall@{k}"] > g2.metrics[f"parent_recall@{k}"], g2.metrics
        assert g2.metrics[f"recall@{k}"] > k / g2.vocab["items"], g2.metrics
        assert 0 < g2.metrics[f"popularity_recall@{k}"] <= 1


# Annoy builds its trees on several threads, so which tree a thread grows (and the tuned
# search_k) can differ run to run; everything the model computes must not.
INDEX_DEPENDENT = {"ann_recall@100_vs_exact"}


def test_the_same_day_gives_the_same_generation_in_another_process(published):
    """Seeded end to end (Dask prepare, TF training, evaluation): day one, run again by a
    ``twotower full-update`` subprocess in a fresh workspace (while the fixture ran day one and
    two in-process), gives g1's numbers and weights bit for bit."""
    from tfrs_models.checkpoint import load_model

    settings, ws, (first, _) = published
    assert TWIN["proc"].wait(timeout=600) == 0, TWIN["log"].read_text()[-3000:]
    target = TWIN["ws"]
    again, g1 = gens.current(target), gens.load(ws, first.generation)
    expected = {k: v for k, v in g1.metrics.items() if k not in INDEX_DEPENDENT}
    assert {k: again.metrics[k] for k in expected} == expected
    a = load_model(gens.directory(ws, g1.id) / g1.paths["checkpoint"], settings.model)
    b = load_model(gens.directory(target, again.id) / again.paths["checkpoint"], settings.model)
    assert len(a.variables) == len(b.variables)
    for x, y in zip(a.variables, b.variables):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.name)


def test_each_generation_lives_in_its_own_online_slot(published):
    settings, ws, (first, second) = published
    for result, slot in ((first, 0), (second, 1)):
        table = pd.read_parquet(gens.directory(ws, result.generation) / "user_id_embedding.parquet").head(20)
        got = _online(settings, ws, table.user_id, slot)
        assert got["generation"] == [result.generation] * len(table)
        np.testing.assert_allclose(np.array(got["embedding"], np.float32), np.stack(table.embedding), rtol=1e-6)


def test_a_published_day_is_not_redone(published):
    settings, ws, (_, second) = published
    before = gens.read_pointer(ws)
    again = run(settings, ws, second.day)
    assert again.generation == second.generation and gens.read_pointer(ws) == before


def _corrupt(ws: Workspace, day, how: str) -> None:
    parts = sorted(ws.events_day_dir(day).glob("*.parquet"))
    events = pq.read_table(parts[0]).to_pandas()
    if how == "unknown_ids":
        events.loc[events.index[:25], "item_id"] = 987_654_321  # items nobody knows
    elif how == "nulls":
        events["user_id"] = events["user_id"].astype("Int64")
        events.loc[events.index[:10], "user_id"] = pd.NA
    elif how == "truncated":
        events = events.head(len(events) // 20)
    elif how == "schema_change":
        events = events.rename(columns={"event_type": "kind"})
    events.to_parquet(parts[0], index=False)


@pytest.mark.parametrize(
    "how, named",
    [("unknown_ids", "unknown_item_id"), ("nulls", "user_id"), ("truncated", "row_count"), ("schema_change", "event_type")],
)
def test_a_bad_day_publishes_nothing(world_copy, how, named):
    settings, ws = world_copy
    day = ws.days()[2]
    _corrupt(ws, day, how)
    before = gens.read_pointer(ws)
    with pytest.raises(ValidationFailed) as failure:
        run(settings, ws, day)
    assert named in str(failure.value), str(failure.value)
    assert gens.read_pointer(ws) == before
    assert not ws.tfrecords_dir(day).exists(), "nothing prepared"
    assert not (ws.root / "work" / str(day)).exists(), "nothing trained"
    assert len(gens.listing(ws)) == 2, "nothing published"


def test_a_bad_day_exits_non_zero_naming_the_expectation(world_copy):
    settings, ws = world_copy
    day = ws.days()[2]
    _corrupt(ws, day, "unknown_ids")
    proc = subprocess.run([TWOTOWER, "-w", str(ws.root), "full-update", str(day)], capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == ValidationFailed.exit_code, out
    assert "expect_column_values_to_be_null" in out and "unknown_item_id" in out, out
