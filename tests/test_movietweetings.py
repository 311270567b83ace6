"""A real public data set through the whole cycle: MovieTweetings (MIT, vendored in
tests/data/movietweetings with its licence and its own feature repo).

Twitter users rating IMDb movies: string IDs (movie IDs like "0110912" keep their zeros), item
side features (release year, genre list), no user attributes (an ID-only user tower), a
click-only log (every rating is an interaction). The user's own steps: the .dat files become a
movies CSV and an events CSV, then ingest -> backfill of the first days -> the next day's full
update -> serve -> emit + incremental.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import httpx
import numpy as np
import pandas as pd
import pytest

from bench.movietweetings import DATA, SETTINGS, events_csv, movies_csv
from serving_support import twotower_in_process as cli, twotower_server
from twotower.core import generations as gens
from twotower.core.config import load_settings
from twotower.core.workspace import Workspace

HISTORY, FULL_DAY, STREAM_DAY = (date(2013, 2, 28), date(2013, 3, 4)), date(2013, 3, 5), date(2013, 3, 6)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("movietweetings")
    ws = root / "ws"
    ws.mkdir()
    (ws / "twotower.toml").write_text(SETTINGS)
    movies = movies_csv(root / "movies.csv")
    events = events_csv(root / "events.csv")
    out = {"ingest": cli(ws, "ingest", "--items", str(root / "movies.csv"), "--events", str(root / "events.csv"))}
    out["backfill"] = cli(ws, "backfill", *map(str, HISTORY), "--epochs", "2")  # bootstrap from the history
    out["full-update"] = cli(ws, "full-update", str(FULL_DAY))  # ... and the nightly cycle from there
    settings = load_settings(workspace=ws)
    return settings, Workspace(settings.workspace), movies, events, out


def test_the_licence_travels_with_the_data():
    assert (DATA / "LICENSE").read_text().startswith("The MIT License (MIT)")
    assert len((DATA / "ratings.dat").read_text().splitlines()) == 10_000


def test_ingest_keeps_the_imdb_ids_and_reads_the_genre_lists(world):
    settings, ws, movies, events, out = world
    assert f"items:  {len(movies)} ingested" in out["ingest"] and f"events: {len(events)} ingested" in out["ingest"]
    stored = pd.read_parquet(ws.offline / "movies.parquet").set_index("movie_id")
    assert stored.loc["0110912", "year"] == 1994 and list(stored.loc["0110912", "genres"]) == ["Crime", "Thriller"]
    assert (stored.index.str.len() == 7).all()  # every IMDb ID with its leading zeros


def test_a_backfill_then_a_full_update_and_an_http_recall_with_string_ids(world, tmp_path):
    settings, ws, movies, events, out = world
    g1, g2 = gens.listing(ws)
    assert (g1.day, g1.parent, g2.day, g2.parent) == (HISTORY[1], None, FULL_DAY, g1.id)
    assert f"serving {g1.id} (day {HISTORY[1]}, from {HISTORY[0]}, parent -)" in out["backfill"]
    trained_on = json.loads((gens.directory(ws, g1.id) / "training.json").read_text())
    assert (trained_on["days"][0], trained_on["days"][-1], trained_on["epochs"]) == (str(HISTORY[0]), str(HISTORY[1]), 2)
    nightly = json.loads((gens.directory(ws, g2.id) / "training.json").read_text())
    assert nightly["warm_start_from"] == g1.id
    # The backfill chose the ID tables' rate on its last two days; the nightly update kept it.
    tuning = trained_on["id_learning_rate_tuning"]
    assert list(tuning["recall@100"]) == [f"{r:g}" for r in settings.full_update.backfill_id_rates]
    best = max(tuning["recall@100"], key=tuning["recall@100"].get)
    assert trained_on["id_learning_rate"] == tuning["chosen"] == float(best) == nightly["id_learning_rate"]
    summary = json.loads((ws.gx_dir / "summaries" / f"{FULL_DAY}.json").read_text())
    assert summary["success"] and any("click rate is not judged" in n for n in summary["notes"])
    trained = set(pd.read_parquet(gens.directory(ws, g2.id) / "user_id_embedding.parquet")["user_id"])
    user = sorted(trained)[0]
    days = pd.to_datetime(events["event_timestamp"].astype(np.int64), unit="s", utc=True).dt.date
    rated = set(events.loc[(events.user_id == user) & (days <= FULL_DAY), "item_id"])  # what serving knows of
    with twotower_server(ws, tmp_path / "serve.log") as base:
        got = httpx.get(f"{base}/recall/{user}", params={"k": 10}, timeout=30).json()
        unseen = httpx.get(f"{base}/recall/{user}", params={"k": 10, "exclude_seen": "true"}, timeout=30).json()
    assert (got["user_id"], got["path"], len(got["items"])) == (user, "embedding", 10)
    assert {i["item_id"] for i in got["items"]} <= set(movies["movie_id"])
    assert len(unseen["items"]) == 10 and not {i["item_id"] for i in unseen["items"]} & rated


def test_the_stream_day_is_pushed(world):
    settings, ws, movies, events, out = world
    day = events.loc[pd.to_datetime(events["event_timestamp"].astype(np.int64), unit="s", utc=True).dt.date == STREAM_DAY]
    assert cli(ws.root, "emit", "--day", str(STREAM_DAY)).startswith(f"appended {len(day):,} events")
    summary = cli(ws.root, "incremental")
    trained = set(pd.read_parquet(gens.directory(ws, gens.current(ws).id) / "user_id_embedding.parquet")["user_id"])
    returning = day["user_id"].isin(trained).any()
    pushed = int(summary.split(" user embeddings pushed")[0].rsplit(" ", 1)[1].replace(",", ""))
    assert pushed > 0 if returning else pushed == 0, summary
    assert f"{len(day):,} events" in summary


def test_the_platform_counts_each_movies_recent_ratings_and_feast_returns_them(world):
    """The popularity view (features.popularity_view): a file per prepared day, written by the
    platform; a rating on the full day is trained with the counts of the day before, which is
    what Feast's ``get_historical_features`` returns for it; the served popular items are the
    decayed counts."""
    from materialize import popularity
    from materialize.examples import build_examples
    from materialize.sources import view_tables
    from twotower import feature_store
    from twotower.core.encode import encode, id_keys

    settings, ws, movies, events, out = world
    spec = feature_store.applied_spec(ws)
    days = [d for d in ws.days() if HISTORY[0] <= d <= FULL_DAY]
    assert sorted(p.stem for p in popularity.popularity_dir(spec).glob("????-??-??.parquet")) == list(map(str, days))
    day_events = pd.read_parquet(ws.events_day_dir(FULL_DAY))
    examples = build_examples(day_events, view_tables(spec.user), view_tables(spec.item), spec=spec,
                              hard_negatives=0, day=FULL_DAY)  # fmt: skip
    label = dict(zip(id_keys(movies["movie_id"].to_numpy(object), "string", "movies"), movies["movie_id"]))
    entity = pd.DataFrame({"movie_id": [label[k] for k in examples["item_id"]], "_row": np.arange(len(examples)),
                           "event_timestamp": pd.to_datetime(examples["event_timestamp"], unit="us", utc=True)})  # fmt: skip
    got = feature_store.store(settings, ws).get_historical_features(
        entity_df=entity, features=[f.ref for f in spec.item.features if f.view == spec.popularity_view]).to_df()
    got = got.sort_values("_row").reset_index(drop=True)
    rows = got["_row"].to_numpy()  # Feast leaves out a movie that has no row yet (nobody rated it before)
    the_day_before = pd.read_parquet(ws.tfrecords_dir(FULL_DAY - timedelta(days=1)) / popularity.STATE).set_index("item_id")
    for f in (f for f in spec.item.features if f.view == spec.popularity_view):
        trained = examples[spec.item.column(f)].to_numpy()
        np.testing.assert_array_equal(encode(f, got[f.name]), trained[rows], err_msg=f.name)
        assert np.isnan(np.delete(trained, rows)).all()
        want = np.log1p(the_day_before[popularity.column(f.decay_days)].reindex(examples["item_id"]).to_numpy())
        counted = ~np.isnan(want)  # a movie nobody rated before has no row: "missing"
        assert counted.mean() > 0.5
        np.testing.assert_allclose(trained[counted], want[counted], atol=0.006)
        assert (np.isnan(trained) == ~counted).all()
    served = pd.read_parquet(gens.directory(ws, gens.listing(ws)[1].id) / "popular_items.parquet")
    state = pd.read_parquet(ws.tfrecords_dir(FULL_DAY) / popularity.STATE)
    top = popularity.popular(state, settings.full_update.popular_decay_days, 10)
    assert served["item_id"].head(10).tolist() == [label[k] for k in top["item_id"]]


def test_a_tweeter_without_an_embedding_gets_what_is_popular_now(world):
    """An ID-only user tower: a user with no embedding of the generation has no input but the
    one OOV row, so serving answers with the generation's popular items (or, when the settings
    say so, the OOV row)."""
    from serving.retriever import Retriever

    settings, ws, movies, events, out = world
    gen = gens.current(ws)
    popular = pd.read_parquet(gens.directory(ws, gen.id) / "popular_items.parquet")["item_id"].head(10).tolist()
    retriever = Retriever.open(settings, ws)
    try:
        got = retriever.recall("a-tweeter-never-seen", k=10)
    finally:
        retriever.close()
    assert (got.path, got.item_ids.tolist()) == ("popular", popular)
    oov = settings.model_copy(update={"serving": settings.serving.model_copy(update={"cold_without_profile": "oov_profile"})})
    retriever = Retriever.open(oov, ws)
    try:
        assert retriever.recall("a-tweeter-never-seen", k=10).path == "oov_profile"
    finally:
        retriever.close()
