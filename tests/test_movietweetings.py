"""A real public data set through the whole cycle: MovieTweetings (MIT, vendored in
tests/data/movietweetings with its licence and its own feature repo).

Twitter users rating IMDb movies: string IDs (movie IDs like "0110912" keep their zeros), item
side features (release year, genre list), no user attributes (an ID-only user tower), a
click-only log (every rating is an interaction). The user's own steps: the .dat files become a
movies CSV and an events CSV, then ingest -> two full updates -> serve -> emit + incremental.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from serving_support import twotower_cli as cli, twotower_server
from twotower.core import generations as gens
from twotower.core.config import load_settings
from twotower.core.workspace import Workspace

DATA = Path(__file__).resolve().parent / "data" / "movietweetings"
FULL_DAYS, STREAM_DAY = (date(2013, 3, 4), date(2013, 3, 5)), date(2013, 3, 6)
SETTINGS = f'''
feature_repo = "{DATA / 'feature_repo'}"

[validation]
require_impressions = false   # ratings only: no impressions logged
max_new_user_share = 1.0      # most tweeters rate once
max_new_item_share = 1.0
row_count_tolerance = 1.5

[model]
batch_size = 64
'''
pytestmark = pytest.mark.slow


def movies_csv(path: Path) -> pd.DataFrame:
    """movies.dat (``id::title (year)::genre|genre``) as the items file of the repo's view."""
    rows = []
    for line in (DATA / "movies.dat").read_text(encoding="utf-8").splitlines():
        movie_id, rest = line.split("::", 1)
        title, genres = rest.rsplit("::", 1)
        year = re.search(r"\((\d{4})\)\s*$", title)
        rows.append((movie_id, year.group(1) if year else "", genres))
    frame = pd.DataFrame(rows, columns=["movie_id", "year", "genres"])
    frame.to_csv(path, index=False)
    return frame


def events_csv(path: Path) -> pd.DataFrame:
    """ratings.dat (``user::movie::rating::epoch``): every rating is a click of that user."""
    ratings = pd.read_csv(DATA / "ratings.dat", sep="::", engine="python", header=None,
                          names=["user_id", "item_id", "rating", "event_timestamp"], dtype=str)  # fmt: skip
    events = ratings.assign(event_type="click")[["user_id", "item_id", "event_type", "event_timestamp"]]
    events.to_csv(path, index=False)
    return events


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("movietweetings")
    ws = root / "ws"
    ws.mkdir()
    (ws / "twotower.toml").write_text(SETTINGS)
    movies = movies_csv(root / "movies.csv")
    events = events_csv(root / "events.csv")
    out = {"ingest": cli(ws, "ingest", "--items", str(root / "movies.csv"), "--events", str(root / "events.csv"))}
    for day in FULL_DAYS:
        out[str(day)] = cli(ws, "full-update", str(day))
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


def test_two_full_updates_and_an_http_recall_with_string_ids(world, tmp_path):
    settings, ws, movies, events, out = world
    g1, g2 = gens.listing(ws)
    assert (g1.day, g2.day, g2.parent) == (*FULL_DAYS, g1.id)
    assert json.loads((gens.directory(ws, g2.id) / "training.json").read_text())["warm_start_from"] == g1.id
    summary = json.loads((ws.gx_dir / "summaries" / f"{FULL_DAYS[1]}.json").read_text())
    assert summary["success"] and any("click rate is not judged" in n for n in summary["notes"])
    trained = set(pd.read_parquet(gens.directory(ws, g2.id) / "user_id_embedding.parquet")["user_id"])
    user = sorted(trained)[0]
    with twotower_server(ws, tmp_path / "serve.log") as base:
        got = httpx.get(f"{base}/recall/{user}", params={"k": 10}, timeout=30).json()
    assert (got["user_id"], got["path"], len(got["items"])) == (user, "embedding", 10)
    assert {i["item_id"] for i in got["items"]} <= set(movies["movie_id"])


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
