"""The small world the ingest tests load: CSV/Parquet inputs in every accepted notation,
the store they must produce, and helpers to compare workspaces byte for byte."""


from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from twotower.core import schema
from model_data import spec_at
from twotower.ingest.job import ingest
from twotower.core.workspace import Workspace

UTC = timezone.utc


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def epoch_s(dt: datetime) -> int:
    return int(dt.timestamp())


# --- one small world, written as CSV with every accepted notation -------------------------
USERS_CSV = """\
user_id,age_bucket,gender,city_tier,interest_tags,signup_date,event_timestamp,nickname
1,2,1,3,3|17|42,2026-10-01,2026-10-01T08:00:00Z,alice
2,,,,,,,bob
3,6,2,4,5 6,2026-10-15T23:30:00-02:00,,carol
"""
ITEMS_CSV = f"""\
item_id,category,tags,author_id,event_timestamp
10,1,1|2,7,2026-10-20T12:00:00+00:00
11,2,,,{epoch_s(utc(2026, 10, 21, 6))}
12,,9,,{epoch_s(utc(2026, 10, 22, 7, 30)) * 1000 + 250}
13,4,  8 | 9  ,70,
"""
EVENTS_CSV = f"""\
request_id,user_id,item_id,event_type,position,event_timestamp
100,1,10,impression,0,2026-11-01T10:00:00Z
100,1,10,click,0,2026-11-01T11:00:05+01:00
100,1,11,ranked_out,,2026-11-01 10:00:00.250
,2,12,Impression,3,{epoch_s(utc(2026, 11, 2))}
,3,12, click ,1,{epoch_s(utc(2026, 11, 2, 23, 59, 59)) * 1000 + 999}
,3,11,impression,,2026-11-02T23:30:00-0100
"""

H0 = utc(2026, 11, 1)  # history start: midnight UTC of the earliest event day

# The columns of the package repo's views (user_profile, item_profile): join key, declared
# fields (a missing value stays null, a missing list is empty), the view's timestamp (missing:
# the history start). signup_date and nickname are not declared: ignored.
EXPECTED_USERS = [
    dict(user_id=1, age_bucket=2, gender=1, city_tier=3, interest_tags=[3, 17, 42], event_timestamp=utc(2026, 10, 1, 8)),
    dict(user_id=2, age_bucket=None, gender=None, city_tier=None, interest_tags=[], event_timestamp=H0),
    dict(user_id=3, age_bucket=6, gender=2, city_tier=4, interest_tags=[5, 6], event_timestamp=H0),
]
EXPECTED_ITEMS = [
    dict(item_id=10, category=1, tags=[1, 2], author_id=7, event_timestamp=utc(2026, 10, 20, 12)),
    dict(item_id=11, category=2, tags=[], author_id=None, event_timestamp=utc(2026, 10, 21, 6)),
    dict(item_id=12, category=None, tags=[9], author_id=None, event_timestamp=utc(2026, 10, 22, 7, 30, 0, 250_000)),
    dict(item_id=13, category=4, tags=[8, 9], author_id=70, event_timestamp=H0),
]
# (request_id or None, user, item, type, position, UTC time); listed in storage order per day.
EXPECTED_EVENTS = {
    date(2026, 11, 1): [
        (100, 1, 10, "impression", 0, utc(2026, 11, 1, 10)),
        (100, 1, 11, "ranked_out", -1, utc(2026, 11, 1, 10, 0, 0, 250_000)),
        (100, 1, 10, "click", 0, utc(2026, 11, 1, 10, 0, 5)),
    ],
    date(2026, 11, 2): [
        (None, 2, 12, "impression", 3, utc(2026, 11, 2)),
        (None, 3, 12, "click", 1, utc(2026, 11, 2, 23, 59, 59, 999_000)),
    ],
    date(2026, 11, 3): [
        (None, 3, 11, "impression", -1, utc(2026, 11, 3, 0, 30)),
    ],
}


def write_csv_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, text in (("users", USERS_CSV), ("items", ITEMS_CSV), ("events", EVENTS_CSV)):
        paths[name] = folder / f"{name}.csv"
        paths[name].write_text(text)
    return paths


def write_parquet_inputs(folder: Path) -> dict[str, Path]:
    """The same world as the CSVs, in native parquet types (nullable ints, lists, tz-aware
    timestamps in other zones, naive timestamps, dates, categoricals, epoch integers)."""
    folder.mkdir(parents=True, exist_ok=True)
    users = pd.DataFrame({
        "user_id": np.array([1, 2, 3], np.int64),
        "age_bucket": pd.array([2, None, 6], dtype="Int64"),
        "gender": [1.0, np.nan, 2.0],  # how pandas stores an int column with gaps
        "city_tier": pd.array([3, None, 4], dtype="Int32"),
        "interest_tags": [[3, 17, 42], None, [5, 6]],
        "signup_date": [date(2026, 10, 1), None, date(2026, 10, 16)],
        "event_timestamp": pd.to_datetime(["2026-10-01T10:00:00+02:00", None, None], utc=True, format="ISO8601")
        .tz_convert("Europe/Berlin"),
    })
    items = pd.DataFrame({
        "item_id": [10, 11, 12, 13],
        "category": pd.array([1, 2, None, 4], dtype="Int64"),
        "tags": [[1, 2], [], [9], [8, 9]],
        "author_id": pd.array([7, None, None, 70], dtype="Int64"),
        "event_timestamp": pd.to_datetime(  # naive = UTC
            ["2026-10-20T12:00:00", "2026-10-21T06:00:00", "2026-10-22T07:30:00.250", None], format="ISO8601"
        ),
    })
    events = pd.DataFrame({
        "request_id": [100, 100, 100, np.nan, np.nan, np.nan],
        "user_id": [1, 1, 1, 2, 3, 3],
        "item_id": [10, 10, 11, 12, 12, 11],
        "event_type": pd.Categorical(["impression", "click", "ranked_out", "IMPRESSION", "click", "impression"]),
        "position": pd.array([0, 0, None, 3, 1, None], dtype="Int64"),
        "event_timestamp": pd.to_datetime([
            "2026-11-01T10:00:00Z", "2026-11-01T10:00:05Z", "2026-11-01T10:00:00.250Z",
            "2026-11-02T00:00:00Z", "2026-11-02T23:59:59.999Z", "2026-11-03T00:30:00Z",
        ], utc=True, format="ISO8601").tz_convert("Asia/Tokyo"),
    })
    paths = {}
    for name, df in (("users", users), ("items", items), ("events", events)):
        paths[name] = folder / f"{name}.parquet"
        df.to_parquet(paths[name], index=False)
    return paths


def tree(root: Path) -> dict[str, str]:
    """Every file (content hash) and directory below ``root``: byte-for-byte state. Empty lock
    files (``*.lock``: where one ingest waits for another) hold no data and are left out."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
        if not (p.name.endswith(".lock") and p.is_file() and p.stat().st_size == 0)
    }


def stored_events(ws: Workspace) -> dict[date, list[dict]]:
    return {day: pq.read_table(ws.events_day_dir(day)).to_pylist() for day in ws.days()}


def check_world(ws: Workspace) -> None:
    """The store holds exactly the EXPECTED_* world, in the store schema."""
    users, items = pq.read_table(ws.users_path), pq.read_table(ws.items_path)
    spec = spec_at(ws)
    assert users.schema.remove_metadata() == schema.tower_table(spec.user)
    assert items.schema.remove_metadata() == schema.tower_table(spec.item)
    assert users.to_pylist() == EXPECTED_USERS
    assert items.to_pylist() == EXPECTED_ITEMS
    assert [p.name for p in sorted(ws.events_dir.iterdir())] == [
        "day=2026-11-01", "day=2026-11-02", "day=2026-11-03"
    ]
    got = stored_events(ws)
    assert set(got) == set(EXPECTED_EVENTS)
    for day, rows in got.items():
        assert [p.name for p in ws.events_day_dir(day).iterdir()] == ["part-00000.parquet"]
        assert pq.read_schema(ws.events_day_dir(day) / "part-00000.parquet").remove_metadata() == schema.EVENTS
        simple = [(r["request_id"], r["user_id"], r["item_id"], r["event_type"], r["position"],
                   r["event_timestamp"]) for r in rows]
        expected = [(e[0], *e[1:]) for e in EXPECTED_EVENTS[day]]
        # a missing request_id becomes the event's own id (a request of its own)
        expected = [
            (r["event_id"] if e[0] is None else e[0], *e[1:]) for e, r in zip(expected, rows)
        ]
        assert simple == expected
    ids = [r["event_id"] for rows in got.values() for r in rows]
    assert len(set(ids)) == len(ids) and all(i > 0 for i in ids)


@pytest.fixture
def csv_inputs(tmp_path) -> dict[str, Path]:
    return write_csv_inputs(tmp_path / "in")


@pytest.fixture
def loaded(settings, ws, csv_inputs) -> Workspace:
    """A workspace whose store holds the CSV world."""
    ingest(settings, ws, spec_at(ws), **csv_inputs)
    return ws
