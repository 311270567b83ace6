"""The Feast feature repo against a real workspace and the real SQLite online store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twotower import feature_store
from materialize import online
from twotower.core.config import load_settings
from twotower.core.errors import UserError
from twotower.core.workspace import Workspace

pytestmark = pytest.mark.slow  # started first (conftest): a long file must not end the run alone

FEAST = str(Path(sys.executable).with_name("feast"))


@pytest.fixture
def world_copy(small_world, tmp_path):
    _, ws = small_world
    target = tmp_path / "ws"
    shutil.copytree(ws.root, target)
    settings = load_settings(workspace=target)
    return settings, Workspace(settings.workspace)


def _end_of(ws: Workspace) -> datetime:
    return datetime.combine(ws.days()[-1] + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)


def _assert_profiles_served(store, ws: Workspace) -> None:
    users = pd.read_parquet(ws.users_path).sample(25, random_state=1)
    got = store.get_online_features(
        features=store.get_feature_service("user_tower_profile"),
        entity_rows=[{"user_id": int(u)} for u in users.user_id],
    ).to_df()
    merged = users.merge(got, on="user_id", suffixes=("", "_online"))
    assert len(merged) == 25
    for col in ("age_bucket", "gender", "city_tier"):
        assert (merged[col] == merged[f"{col}_online"]).all(), col
    for want, have in zip(merged.interest_tags, merged.interest_tags_online):
        assert list(want) == list(have)

    items = pd.read_parquet(ws.items_path).sample(25, random_state=2)
    got = store.get_online_features(
        features=store.get_feature_service("item_tower"),
        entity_rows=[{"item_id": int(i)} for i in items.item_id],
    ).to_df()
    merged = items.merge(got, on="item_id", suffixes=("", "_online"))
    assert (merged.category == merged.category_online).all()
    assert (merged.author_id == merged.author_id_online).all()


def test_feast_apply_and_materialize_by_hand(world_copy):
    """What a user types: `feast apply` and `feast materialize-incremental` from feature_repo/."""
    _, ws = world_copy
    env = dict(os.environ, TWOTOWER_WORKSPACE=str(ws.root))
    repo = feature_store.FEATURE_REPO
    (ws.root / "feast").mkdir(exist_ok=True)
    out = subprocess.run([FEAST, "apply"], cwd=repo, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "user_id_embedding" in out.stdout and "user_tower" in out.stdout
    end = _end_of(ws).strftime("%Y-%m-%dT%H:%M:%S")
    out = subprocess.run(
        [FEAST, "materialize-incremental", end, "--views", "user_profile", "--views", "item_profile"],
        cwd=repo, env=env, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr

    os.environ["TWOTOWER_WORKSPACE"] = str(ws.root)
    from feast import FeatureStore

    _assert_profiles_served(FeatureStore(repo_path=str(repo)), ws)


def test_feast_by_hand_without_workspace_says_what_to_set(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TWOTOWER_WORKSPACE"}
    out = subprocess.run([FEAST, "apply"], cwd=feature_store.FEATURE_REPO, env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "TWOTOWER_WORKSPACE" in out.stdout + out.stderr


def test_twotower_runs_feast_and_push_source_reaches_online_store(world_copy):
    settings, ws = world_copy
    feature_store.apply(settings, ws)
    online.materialize(settings, ws, _end_of(ws), ["user_profile", "item_profile"])
    store = feature_store.store(settings, ws)
    _assert_profiles_served(store, ws)

    from feast.data_source import PushMode

    vectors = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    now = datetime.now(timezone.utc)
    store.push(
        "user_id_embedding_push",
        pd.DataFrame(
            {
                "user_id": [1, 2, 3],
                "embedding_slot": [1, 1, 1],
                "embedding": list(vectors),
                "generation": ["g-test"] * 3,
                "event_timestamp": [now] * 3,
                "created_timestamp": [now] * 3,
            }
        ),
        to=PushMode.ONLINE,
    )
    got = store.get_online_features(
        features=store.get_feature_service("user_tower"),
        entity_rows=[{"user_id": u, "embedding_slot": s} for s in (1, 0) for u in (1, 2, 3)],
    ).to_dict()
    assert got["generation"] == ["g-test"] * 3 + [None] * 3, "slots are independent"
    np.testing.assert_allclose(np.array(got["embedding"][:3], dtype=np.float32), vectors)
    assert got["age_bucket"][0] is not None and got["age_bucket"][0] == got["age_bucket"][3]


def test_apply_without_offline_store_is_a_clear_error(settings, ws):
    with pytest.raises(UserError, match="twotower simulate"):
        feature_store.apply(settings, ws)


def test_redis_is_selected_by_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("TWOTOWER_ONLINE_STORE__TYPE", "redis")
    monkeypatch.setenv("TWOTOWER_ONLINE_STORE__REDIS_PASSWORD", "s3cret")
    settings = load_settings(workspace=tmp_path / "ws")
    text = feature_store.render_yaml(settings, Workspace(settings.workspace))
    assert "type: redis" in text and "127.0.0.1:6379" in text
    assert "s3cret" not in text, "secrets stay in the environment, never in files"
    assert "${TWOTOWER_ONLINE_STORE__REDIS_PASSWORD}" in text


def test_registry_is_replaced_atomically(world_copy, monkeypatch):
    """Both the rendered and the by-hand feature_store.yaml use the atomic registry store: a
    write that dies half-way (here: fsync raises) leaves the previous registry whole."""
    from feast import FeatureStore

    from twotower.adapters.feast_registry import AtomicFileRegistryStore

    settings, ws = world_copy
    feature_store.apply(settings, ws)
    store = feature_store.store(settings, ws)
    registry_store = store.registry._registry_store
    assert isinstance(registry_store, AtomicFileRegistryStore)
    monkeypatch.setenv("TWOTOWER_WORKSPACE", str(ws.root))
    by_hand = FeatureStore(repo_path=str(feature_store.FEATURE_REPO))
    assert isinstance(by_hand.registry._registry_store, AtomicFileRegistryStore)

    path = ws.feast_dir / "registry.db"
    before = path.read_bytes()
    proto = registry_store.get_registry_proto()

    def dies(_fd):
        raise OSError("disk gone")

    monkeypatch.setattr("twotower.core.files.os.fsync", dies)
    with pytest.raises(OSError, match="disk gone"):
        registry_store.update_registry_proto(proto)
    assert path.read_bytes() == before
    assert [p.name for p in ws.feast_dir.iterdir() if p.name.endswith(".tmp")] == []
    monkeypatch.undo()
    registry_store.update_registry_proto(proto)  # and a normal write replaces it
    assert path.read_bytes() != before and len(store.list_feature_views()) >= 3


def test_a_feature_repo_that_is_not_one_is_named(tmp_path):
    settings = load_settings(workspace=tmp_path / "ws", feature_repo=tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"feature_repo \(TWOTOWER_FEATURE_REPO\): .*nowhere is not a Feast feature repo"):
        feature_store.feature_repo(settings)
    assert feature_store.feature_repo(load_settings(workspace=tmp_path / "ws")) == feature_store.FEATURE_REPO


def test_apply_is_skipped_only_while_nothing_it_reads_changed(world_copy, tmp_path):
    settings, ws = world_copy
    repo = tmp_path / "repo"
    shutil.copytree(feature_store.FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    settings = settings.model_copy(update={"feature_repo": repo})
    assert "skipped" not in feature_store.apply(settings, ws)  # the first apply runs
    assert "skipped" in feature_store.apply(settings, ws)  # nothing changed
    declarations = next(p for p in sorted(repo.glob("*.py")) if "FeatureView(" in p.read_text())
    declarations.write_text(declarations.read_text() + "\n# an edit of the user's repo\n")
    assert "skipped" not in feature_store.apply(settings, ws)  # the declarations moved
    assert "skipped" in feature_store.apply(settings, ws)
    registry = ws.feast_dir / "registry.db"
    registry.write_bytes(registry.read_bytes())  # same bytes: still the registry it left
    assert "skipped" in feature_store.apply(settings, ws)
    store = feature_store.store(settings, ws)
    store.registry.refresh()
    store.apply([])  # someone else writes the registry: the next apply must run
    assert feature_store.applied_state(settings, ws) != json.loads((ws.feast_dir / feature_store.APPLIED).read_text())


def test_training_examples_equal_feast_historical_features(world_copy):
    """Train/serve parity, offline: the examples' point-in-time features are what Feast's own
    ``get_historical_features`` returns for the same (entity, click time) rows."""
    from materialize.examples import build_examples
    from materialize.sources import view_tables
    from twotower.core.encode import encode

    settings, ws = world_copy
    feature_store.apply(settings, ws)
    store, spec = feature_store.store(settings, ws), feature_store.applied_spec(ws)
    day = ws.days()[1]
    examples = build_examples(
        pd.read_parquet(ws.events_day_dir(day)), view_tables(spec.user), view_tables(spec.item),
        spec=spec, hard_negatives=2, day=day,
    ).sample(300, random_state=0).reset_index(drop=True)  # fmt: skip
    at = pd.to_datetime(examples["event_timestamp"], unit="us", utc=True)
    for tower, key in ((spec.user, "user_id"), (spec.item, "item_id")):
        entity = pd.DataFrame({tower.join_key: examples[key].to_numpy(), "event_timestamp": at, "_row": np.arange(len(at))})
        got = store.get_historical_features(entity_df=entity, features=[f.ref for f in tower.features]).to_df()
        got = got.sort_values("_row").reset_index(drop=True)
        assert got["_row"].tolist() == list(range(len(at)))
        for f in tower.features:
            column = examples[tower.column(f)].to_numpy()
            want = np.stack(column) if f.shape else column
            np.testing.assert_array_equal(encode(f, got[f.name]), want, err_msg=f.ref)


def test_opening_the_store_to_read_writes_nothing_unless_the_settings_changed(tmp_path):
    """A server or a reader of a shared workspace must not rewrite its feature_store.yaml (a
    copy being taken beside it once caught the writer's temporary file)."""
    settings = load_settings(workspace=tmp_path)
    ws = Workspace(settings.workspace)
    path = feature_store.prepare(settings, ws)
    before = path.stat()
    assert feature_store.prepare(settings, ws) == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    (tmp_path / "twotower.toml").write_text("[online_store]\ntype = \"redis\"\nredis_port = 6399\n")
    feature_store.prepare(load_settings(workspace=tmp_path), ws)
    assert "redis" in path.read_text() and path.stat().st_ino != before.st_ino
