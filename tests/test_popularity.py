"""Decayed clicks per item (materialize/popularity.py): the state day by day, the rows of the
popularity view, and the spec's checks of the view's declaration; and when a backfill chooses
the ID tables' learning rate (twotower/pipelines/id_rate.py)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.movietweetings import DATA
from materialize import popularity
from twotower.core.config import FeatureSettings
from twotower.core.errors import UserError
from twotower.feature_store.repo import of_repo


def test_decayed_clicks_add_up_day_by_day_and_fade_out():
    taus = [1.0, 10.0]
    day1 = popularity.advance(None, 0, pd.Series({5: 4, 7: 1, 9: 0}), taus)
    assert day1["item_id"].tolist() == [5, 7]  # an item nobody clicked has no weight
    day3 = popularity.advance(day1, 2, pd.Series({7: 2}), taus)  # two days later
    got = day3.set_index("item_id")
    assert got.loc[5, "decay_1d"] == pytest.approx(4 * np.exp(-2)) and got.loc[5, "decay_10d"] == pytest.approx(4 * np.exp(-0.2))
    assert got.loc[7, "decay_1d"] == pytest.approx(np.exp(-2) + 2) and got.loc[7, "decay_10d"] == pytest.approx(np.exp(-0.2) + 2)
    later = popularity.advance(day3, 100, pd.Series(dtype=np.int64), taus)  # 10 x the longest time constant
    assert later.empty
    assert popularity.popular(day3, 1.0, 1)["item_id"].tolist() == [7]
    assert popularity.popular(day3, 10.0, 2)["item_id"].tolist() == [5, 7]


def _repo(tmp_path: Path, old: str = "", new: str = "", file: str = "views.py") -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(DATA / "feature_repo", repo, ignore=shutil.ignore_patterns("__pycache__"))
    if old:
        text = (repo / file).read_text()
        assert old in text, old
        (repo / file).write_text(text.replace(old, new))
    return repo


def test_the_movietweetings_repo_declares_the_popularity_view(tmp_path, monkeypatch):
    monkeypatch.setenv("TWOTOWER_WORKSPACE", str(tmp_path / "ws"))
    spec = of_repo(_repo(tmp_path), FeatureSettings())
    assert spec.popularity_view == "item_popularity" and spec.item.platform_views == ("item_popularity",)
    assert [(f.name, f.kind, f.decay_days) for f in spec.item.features if f.view == "item_popularity"] == [
        ("ratings_3d", "numeric", 3.0), ("ratings_30d", "numeric", 30.0)]  # fmt: skip
    assert spec.item.data_views() == ["movie_facts"]  # what ingest writes and the gate checks
    assert [f.name for f in spec.data_spec().item.features] == ["year", "genres"]
    assert popularity.horizons(spec, 7.0) == [3.0, 7.0, 30.0]


@pytest.mark.parametrize("old, new, message", [
    ('Field(name="ratings_3d", dtype=Float32, tags={"decay_days": "3"})',
     'Field(name="ratings_3d", dtype=Int64, tags={"decay_days": "3"})',
     "view 'item_popularity' (features.popularity_view), field 'ratings_3d': the platform writes decayed click "
     "counts, so the field must be Float32 or Float64 (is Int64, categorical)"),
    ('tags={"decay_days": "30"}', 'tags={"decay_days": "-1"}',
     "field 'ratings_30d': needs tag decay_days, a positive number of days (got '-1')"),
    ('tags={"decay_days": "30"}', "",
     "field 'ratings_30d': needs tag decay_days, a positive number of days (got None)"),
    ('Field(name="year", dtype=Int64, tags={', 'Field(name="year", dtype=Int64, tags={"decay_days": "3", ',
     "view 'movie_facts', field 'year': tag decay_days is for the fields of 'item_popularity'"),
])  # fmt: skip
def test_a_popularity_view_the_platform_cannot_write_is_refused(tmp_path, monkeypatch, old, new, message):
    monkeypatch.setenv("TWOTOWER_WORKSPACE", str(tmp_path / "ws"))
    with pytest.raises(UserError) as err:
        of_repo(_repo(tmp_path, old, new), FeatureSettings())
    assert message in str(err.value)


def test_the_popularity_view_reads_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TWOTOWER_WORKSPACE", str(tmp_path / "ws"))
    repo = _repo(tmp_path, '"offline" / "item_popularity")', '"offline" / "item_popularity.parquet")', "sources.py")
    with pytest.raises(UserError, match="its FileSource path .*item_popularity.parquet' must be a directory"):
        of_repo(repo, FeatureSettings())


def test_the_view_gets_the_rows_that_changed(tmp_path):
    (tmp_path / "ws").mkdir()
    spec = of_repo(_repo(tmp_path), FeatureSettings(), tmp_path / "ws")
    from twotower.core.encode import id_keys

    labels = np.array(["0000001", "0000002", "0000003"], dtype=object)
    keys = id_keys(labels, "string", "items")
    taus = popularity.horizons(spec, 0)
    first = popularity.advance(None, 0, pd.Series({keys[0]: 3, keys[1]: 1}), taus)
    assert popularity.write_view(spec, date(2013, 3, 1), first, None, labels) == 2
    second = popularity.advance(first, 1, pd.Series({keys[1]: 5, keys[2]: 1}), taus)
    assert popularity.write_view(spec, date(2013, 3, 2), second, first, labels) == 3  # all decayed or clicked
    rows = pd.read_parquet(tmp_path / "ws" / "offline" / "item_popularity" / "2013-03-02.parquet").set_index("movie_id")
    assert rows.loc["0000002", "ratings_3d"] == pytest.approx(np.log1p(np.exp(-1 / 3) + 5), abs=0.005)
    assert str(rows["event_timestamp"].iloc[0]) == "2013-03-02 23:59:59.999999+00:00"  # the next day's clicks see it
    assert popularity.written_before(spec, date(2013, 3, 2)) and not popularity.written_before(spec, date(2013, 3, 1))


def test_a_backfill_chooses_the_id_rate_only_when_there_is_a_choice(tmp_path):
    from twotower.core.config import ModelSettings, load_settings
    from twotower.core.sections import FullUpdateSettings
    from twotower.pipelines import id_rate

    settings = load_settings(workspace=tmp_path)
    assert id_rate.wanted(settings, 3) and not id_rate.wanted(settings, 2)  # the last 2 days are the validation
    named = settings.model_copy(update={"model": ModelSettings(id_learning_rate=0.02)})
    assert not id_rate.wanted(named, 30)  # the settings chose it
    one = settings.model_copy(update={"full_update": FullUpdateSettings(backfill_id_rates=[0.01, 0.01])})
    assert not id_rate.wanted(one, 30)
    assert id_rate.inherited(named, None, None).id_learning_rate == 0.02
    with pytest.raises(ValueError, match="backfill_id_rates must be positive learning rates, got \\[0.05, 0.0\\]"):
        FullUpdateSettings(backfill_id_rates=[0.05, 0.0])


def test_a_missing_state_is_rebuilt_from_the_prepared_days_counts(tmp_path):
    from twotower.core.workspace import Workspace

    ws = Workspace(tmp_path)
    days, taus = [date(2013, 3, 1), date(2013, 3, 3)], [2.0]
    for day, counts in zip(days, ({1: 4, 2: 1}, {2: 3})):
        ws.tfrecords_dir(day).mkdir(parents=True)
        pd.DataFrame({"item_id": list(counts), "clicks": list(counts.values()),
                      "trained_clicks": [c - 1 for c in counts.values()]}).to_parquet(ws.tfrecords_dir(day) / "f.parquet")  # fmt: skip
    at, state = popularity.previous_state(ws, date(2013, 3, 4), taus, days, "f.parquet")
    got = state.set_index("item_id")["decay_2d"]
    assert at == days[1] and got[1] == pytest.approx(3 * np.exp(-1)) and got[2] == pytest.approx(0 + 2)  # held-out not counted
    state.assign(decay_2d=0.0).to_parquet(ws.tfrecords_dir(days[1]) / popularity.STATE)  # a state kept: read as it is
    assert popularity.previous_state(ws, date(2013, 3, 4), taus, days, "f.parquet")[1]["decay_2d"].eq(0).all()
    assert popularity.previous_state(ws, date(2013, 3, 1), taus, days, "f.parquet") == (None, None)
