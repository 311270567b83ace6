"""The vendored MovieTweetings sample (tests/data/movietweetings, MIT) as a user would bring it.

MovieTweetings (github.com/sidooms/MovieTweetings): Twitter users rating IMDb movies. The
``.dat`` files become the two files ``twotower ingest`` takes - a movies CSV (the item view's
columns: IMDb ID, release year, genre list) and an events CSV (every rating is a click) - and
the workspace settings that fit a ratings-only log. Used by the real-data benchmark and the
MovieTweetings tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "movietweetings"
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


def ratings() -> pd.DataFrame:
    """ratings.dat (``user::movie::rating::epoch``), IDs as strings, in file order."""
    return pd.read_csv(DATA / "ratings.dat", sep="::", engine="python", header=None,
                       names=["user_id", "item_id", "rating", "event_timestamp"], dtype=str)  # fmt: skip


def events_csv(path: Path) -> pd.DataFrame:
    """Every rating as a click of that user (the events file)."""
    events = ratings().assign(event_type="click")[["user_id", "item_id", "event_type", "event_timestamp"]]
    events.to_csv(path, index=False)
    return events
