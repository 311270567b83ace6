"""The feature spec read from a Feast repo: kinds from dtypes and tags, the one-file change that
adds a feature, and a clear error for each schema mistake (naming service, view, field, value)."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import numpy as np
import pytest

from model_data import small_settings
from twotower.core.config import FeatureSettings
from twotower.core.errors import UserError
from twotower.feature_store import FEATURE_REPO
from twotower.feature_store.repo import of_repo

pytestmark = pytest.mark.slow  # started first (conftest): a long file must not end the run alone

ADD_ACTIVITY = (
    '        Field(name="interest_tags", dtype=Array(Int32), tags={"buckets": "1024", "max_len": "3"}),\n',
    '        Field(name="interest_tags", dtype=Array(Int32), tags={"buckets": "1024", "max_len": "3"}),\n'
    '        Field(name="activity", dtype=Float64),\n',
)


def copy_repo(tmp_path: Path, edit: tuple[str, str] | None = None, file: str = "feature_views.py") -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    if edit is not None:
        text = (repo / file).read_text()
        assert edit[0] in text, edit[0]
        (repo / file).write_text(text.replace(edit[0], edit[1]))
    return repo


def test_the_package_repo_declares_the_simulator_world():
    spec = of_repo(FEATURE_REPO, FeatureSettings())
    assert [(f.name, f.kind, f.buckets, f.max_len) for f in spec.user.features] == [
        ("age_bucket", "categorical", 8, 0), ("gender", "categorical", 4, 0), ("city_tier", "categorical", 8, 0),
        ("interest_tags", "multi", 1024, 3)]  # fmt: skip
    assert (spec.user.feature("age_bucket").min, spec.user.feature("age_bucket").max) == (0, 6)
    assert [f.name for f in spec.item.features] == ["category", "tags", "author_id"]
    assert (spec.user.join_key, spec.user.id_type, spec.context) == ("user_id", "int", ("hour",))
    assert spec.history_view == "user_recent_clicks"  # the platform's own view: not a tower input


def test_adding_a_feature_is_a_one_file_change_that_reaches_the_towers(tmp_path, small_world):
    from materialize.examples import build_examples
    from tfrs_models.checkpoint import warm_start
    from twotower.core.errors import FeatureSetChanged
    from tfrs_models.catalog import ItemCatalog
    from tfrs_models.training import numeric_stats, train_full

    _, ws = small_world
    repo = copy_repo(tmp_path, ADD_ACTIVITY)
    changed = [
        name for name in sorted(p.name for p in FEATURE_REPO.iterdir() if p.is_file())
        if (FEATURE_REPO / name).read_bytes() != (repo / name).read_bytes()
    ]  # fmt: skip
    diff = list(difflib.unified_diff((FEATURE_REPO / "feature_views.py").read_text().splitlines(),
                                     (repo / "feature_views.py").read_text().splitlines(), lineterm="", n=0))  # fmt: skip
    assert changed == ["feature_views.py"]
    assert [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
        '+        Field(name="activity", dtype=Float64),']

    spec = of_repo(repo, FeatureSettings(), ws.root)
    activity = spec.user.feature("activity")
    assert (activity.kind, activity.value) == ("numeric", "float")
    import pandas as pd

    users, items = pd.read_parquet(ws.users_path), pd.read_parquet(ws.items_path)
    day = ws.days()[0]
    examples = build_examples(pd.read_parquet(ws.events_day_dir(day)), users, items, spec=spec, hard_negatives=2, day=day)
    assert examples["user__activity"].dtype == np.float32 and examples["user__activity"].gt(0).mean() > 0.9
    s = small_settings()
    catalog = ItemCatalog.from_frames(items, spec.item)
    stats = {"user": numeric_stats(spec.user, users)}
    run = train_full(s, examples, spec=spec, user_ids=users["user_id"].to_numpy(), catalog=catalog,
                     numeric_stats=stats, seed=0)  # fmt: skip
    layer = run.model.user_tower.inputs_by_name["activity"]
    assert float(layer.mean.numpy()) == pytest.approx(users["activity"].mean(), rel=1e-4)

    # A warm start from a model built without the field says what changed and refuses.
    before = of_repo(FEATURE_REPO, FeatureSettings(), ws.root)
    old = train_full(s, build_examples(pd.read_parquet(ws.events_day_dir(day)), users, items, spec=before,
                                       hard_negatives=2, day=day),
                     spec=before, user_ids=users["user_id"].to_numpy(), catalog=ItemCatalog.from_frames(items, before.item),
                     seed=0).model  # fmt: skip
    with pytest.raises(FeatureSetChanged, match="user feature 'activity' added"):
        warm_start(old, s, users["user_id"].to_numpy(), catalog, spec=spec)


@pytest.mark.parametrize("case, edit, file, message", [
    ("a service that is missing", ('name="user_tower",', 'name="user_tower_v2",'), "feature_services.py",
     "features.user_service: the feature repo declares no feature service 'user_tower' (it declares: "),
    ("a dtype the towers cannot use", ('Field(name="gender", dtype=Int32, tags={"buckets": "4", "min": "0", "max": "2"})',
                                       'Field(name="gender", dtype=UnixTimestamp)'), "feature_views.py",
     "feature service 'user_tower', view 'user_profile', field 'gender': the towers cannot use dtype UnixTimestamp"),
    ("a tag with a bad value", ('tags={"buckets": "256", "min": "0"}', 'tags={"buckets": "lots"}'), "feature_views.py",
     "feature service 'item_tower', view 'item_profile', field 'category': tag buckets='lots' must be a positive integer"),
    ("a kind the dtype cannot be", ('Field(name="author_id", dtype=Int64, tags={"buckets": "4096"})',
                                    'Field(name="author_id", dtype=Int64, tags={"kind": "vector"})'), "feature_views.py",
     "field 'author_id': dtype Int64 cannot be a vector input"),
    ("a vector without its length", ('Field(name="author_id", dtype=Int64, tags={"buckets": "4096"})',
                                     'Field(name="author_id", dtype=Array(Float32))'), "feature_views.py",
     "field 'author_id': a vector field needs its length as a tag"),
    ("an argument Feast's type checks refuse", ('Field(name="author_id", dtype=Int64, tags={"buckets": "4096"})',
                                                 'Field(name=4096, dtype=Int64)'), "feature_views.py",
     'argument "name" (int) is not an instance of str'),
    ("a history view of the wrong item type", ('schema=[Field(name="items", dtype=Array(Int64))]',
                                                'schema=[Field(name="items", dtype=Array(String))]'), "feature_views.py",
     "view 'user_recent_clicks' (features.history_view): needs field 'items' of type Array(Int64)"),
    ("declarations that do not import", ("from feast import FeatureService", "from feast import FeatureServiceX"),
     "feature_services.py", "cannot import its declarations: ImportError"),
])  # fmt: skip
def test_schema_mistakes_name_what_is_wrong(tmp_path, case, edit, file, message):
    repo = copy_repo(tmp_path, edit, file)
    if "UnixTimestamp" in edit[1]:
        text = (repo / file).read_text()
        (repo / file).write_text(text.replace("from feast.types import", "from feast.types import UnixTimestamp,"))
    with pytest.raises(UserError) as err:
        of_repo(repo, FeatureSettings())
    assert message in str(err.value), f"{case}: {err.value}"


def test_a_repo_the_towers_cannot_use_is_refused_before_feast_writes(tmp_path, small_world):
    from twotower import feature_store
    from twotower.core.config import load_settings
    from twotower.core.workspace import Workspace

    _, world = small_world
    repo = copy_repo(tmp_path, ('tags={"buckets": "256", "min": "0"}', 'tags={"buckets": "0"}'))
    settings = load_settings(workspace=tmp_path / "ws", feature_repo=repo)
    ws = Workspace(settings.workspace)
    shutil.copytree(world.offline, ws.offline)
    with pytest.raises(UserError, match="field 'category': tag buckets='0' must be a positive integer"):
        feature_store.apply(settings, ws)
    assert not (ws.feast_dir / "registry.db").exists() and not ws.feature_spec_path.exists()
