"""``twotower ingest``: user files -> offline store, exactly, atomically, or not at all."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from twotower import schema
from twotower.errors import DataError
from twotower.ingest import ingest
from twotower.offline_commit import STAGING, recover
from twotower.workspace import Workspace

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
item_id,category,tags,author_id,created_at
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

EXPECTED_USERS = [
    dict(user_id=1, age_bucket=2, gender=1, city_tier=3, interest_tags=[3, 17, 42],
         signup_date=date(2026, 10, 1), event_timestamp=utc(2026, 10, 1, 8)),
    dict(user_id=2, age_bucket=0, gender=0, city_tier=0, interest_tags=[],
         signup_date=date(2026, 11, 1), event_timestamp=H0),
    dict(user_id=3, age_bucket=6, gender=2, city_tier=4, interest_tags=[5, 6],
         signup_date=date(2026, 10, 16), event_timestamp=utc(2026, 10, 16)),
]
EXPECTED_ITEMS = [
    dict(item_id=10, category=1, tags=[1, 2], author_id=7, created_at=utc(2026, 10, 20, 12)),
    dict(item_id=11, category=2, tags=[], author_id=0, created_at=utc(2026, 10, 21, 6)),
    dict(item_id=12, category=0, tags=[9], author_id=0, created_at=utc(2026, 10, 22, 7, 30, 0, 250_000)),
    dict(item_id=13, category=4, tags=[8, 9], author_id=70, created_at=H0),
]
for _item in EXPECTED_ITEMS:
    _item["event_timestamp"] = _item["created_at"]
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
        "created_at": pd.to_datetime(  # naive = UTC
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
    """Every file (content hash) and directory below ``root``: byte-for-byte state."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def stored_events(ws: Workspace) -> dict[date, list[dict]]:
    return {day: pq.read_table(ws.events_day_dir(day)).to_pylist() for day in ws.days()}


def check_world(ws: Workspace) -> None:
    """The store holds exactly the EXPECTED_* world, in the store schema."""
    users, items = pq.read_table(ws.users_path), pq.read_table(ws.items_path)
    assert users.schema.remove_metadata() == schema.USERS
    assert items.schema.remove_metadata() == schema.ITEMS
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
    ingest(settings, ws, **csv_inputs)
    return ws


# --- round trip ----------------------------------------------------------------------------
def test_csv_round_trip_maps_every_notation(settings, ws, csv_inputs):
    summary = ingest(settings, ws, **csv_inputs)
    check_world(ws)
    assert (summary.users, summary.users_added, summary.items, summary.events) == (3, 3, 4, 6)
    assert summary.days == (date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3))
    assert summary.generated_event_ids == 6
    assert summary.ignored_columns == {str(csv_inputs["users"]): ("nickname",)}
    assert not (ws.offline / STAGING).exists()


def test_parquet_round_trip_gives_the_same_store_byte_for_byte(settings, tmp_path, csv_inputs):
    from twotower.config import load_settings

    ws_pq = Workspace(tmp_path / "ws-parquet")
    ingest(load_settings(workspace=ws_pq.root), ws_pq, **write_parquet_inputs(tmp_path / "pq"))
    check_world(ws_pq)
    ws_csv = Workspace(tmp_path / "ws-csv")
    ingest(load_settings(workspace=ws_csv.root), ws_csv, **csv_inputs)
    assert tree(ws_pq.offline) == tree(ws_csv.offline)


def test_simulated_store_ingests_back_unchanged(small_world, tmp_path):
    """Files in the simulator's layout (event_id, request_id given) come back identical."""
    from twotower.config import load_settings

    _, sim = small_world
    folder = tmp_path / "export"
    folder.mkdir()
    shutil.copy(sim.users_path, folder / "users.parquet")
    shutil.copy(sim.items_path, folder / "items.parquet")
    pq.write_table(pq.read_table(sim.events_dir), folder / "events.parquet")
    ws = Workspace(tmp_path / "ws")
    summary = ingest(load_settings(workspace=ws.root), ws, users=folder / "users.parquet",
                     items=folder / "items.parquet", events=folder / "events.parquet")
    assert summary.generated_event_ids == 0 and summary.days == tuple(sim.days())
    for path in ("users_path", "items_path"):
        key = "user_id" if path == "users_path" else "item_id"
        a = pq.read_table(getattr(sim, path)).sort_by(key)
        b = pq.read_table(getattr(ws, path))
        assert b.equals(a.select(b.column_names).cast(b.schema)), path
    for day in sim.days():
        a = pq.read_table(sim.events_day_dir(day)).sort_by("event_id")
        b = pq.read_table(ws.events_day_dir(day)).sort_by("event_id")
        assert b.equals(a.cast(b.schema)), day


# --- re-ingest -------------------------------------------------------------------------------
def test_reingest_is_idempotent(settings, loaded, csv_inputs):
    before = tree(loaded.root)
    summary = ingest(settings, loaded, **csv_inputs)
    assert tree(loaded.root) == before
    assert (summary.users_replaced, summary.items_replaced) == (3, 4)


def test_reingest_upserts_ids_and_replaces_only_incoming_days(settings, loaded, tmp_path):
    before = tree(loaded.offline)
    users = tmp_path / "more_users.csv"
    users.write_text("user_id,age_bucket,signup_date\n2,5,2026-09-09\n4,1,2026-11-02\n")
    events = tmp_path / "day2.csv"
    events.write_text("user_id,item_id,event_type,event_timestamp\n"
                      "4,10,click,2026-11-02T12:00:00Z\n2,13,impression,2026-11-02T13:00:00Z\n")
    summary = ingest(settings, loaded, users=users, events=events)
    assert (summary.users_added, summary.users_replaced, summary.days) == (1, 1, (date(2026, 11, 2),))

    got = {u["user_id"]: u for u in pq.read_table(loaded.users_path).to_pylist()}
    assert sorted(got) == [1, 2, 3, 4]
    assert got[1] == EXPECTED_USERS[0] and got[3] == EXPECTED_USERS[2]  # untouched
    assert got[2]["age_bucket"] == 5 and got[2]["signup_date"] == date(2026, 9, 9)  # replaced
    assert got[2]["event_timestamp"] == utc(2026, 9, 9)
    after = tree(loaded.offline)
    for unchanged in ("items.parquet", "events/day=2026-11-01/part-00000.parquet",
                      "events/day=2026-11-03/part-00000.parquet"):
        assert after[unchanged] == before[unchanged]
    day2 = stored_events(loaded)[date(2026, 11, 2)]
    assert [(e["user_id"], e["item_id"]) for e in day2] == [(4, 10), (2, 13)]


def test_generated_event_ids_are_stable_and_keep_exact_duplicates(settings, ws, tmp_path):
    users, items = tmp_path / "u.csv", tmp_path / "i.csv"
    users.write_text("user_id\n1\n")
    items.write_text("item_id\n5\n")
    events = tmp_path / "e.csv"
    events.write_text("user_id,item_id,event_type,event_timestamp\n" + "1,5,impression,2026-11-01T00:00:00Z\n" * 2)
    ingest(settings, ws, users=users, items=items, events=events)
    first = [e["event_id"] for e in stored_events(ws)[date(2026, 11, 1)]]
    assert len(set(first)) == 2
    events.write_text("event_id,user_id,item_id,event_type,event_timestamp\n"
                      ",1,5,impression,2026-11-01T00:00:00Z\n,1,5,impression,2026-11-01T00:00:00Z\n")
    ingest(settings, ws, events=events)  # same content (an empty event_id column): same IDs
    assert [e["event_id"] for e in stored_events(ws)[date(2026, 11, 1)]] == first


def test_day_partitions_split_into_part_files(tmp_path, csv_inputs):
    from twotower.config import load_settings

    settings = load_settings(workspace=tmp_path / "ws")
    settings.ingest.rows_per_file = 2
    ws = Workspace(settings.workspace)
    ingest(settings, ws, **csv_inputs)
    day1 = ws.events_day_dir(date(2026, 11, 1))
    assert sorted(p.name for p in day1.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert [pq.read_metadata(p).num_rows for p in sorted(day1.iterdir())] == [2, 1]


# --- bad input: clear message, nothing written -------------------------------------------------
EVENTS_HEAD = "user_id,item_id,event_type,event_timestamp\n"


def _bad_cases(stored_event_id: int) -> list[tuple[str, dict[str, tuple[str, str | bytes]], list[str]]]:
    """(case, {option: (file name, content)}, substrings the message must contain)."""
    ok_event = "1,10,click,2026-11-05T00:00:00Z\n"
    return [
        ("missing required column", {"events": ("ev.csv", "user_id,event_type,event_timestamp\n1,click,2026-11-05\n")},
         ["ev.csv", "column 'item_id'", "missing required column"]),
        ("non-integer id", {"users": ("us.csv", "user_id,age_bucket\n5,1\nu7,2\n")},
         ["us.csv", "column 'user_id'", "not an integer", "row 2 ('u7')"]),
        ("float id", {"items": ("it.csv", "item_id\n1.5\n20\n")},
         ["it.csv", "column 'item_id'", "not an integer", "row 1 ('1.5')"]),
        ("unparsable timestamp", {"events": ("ev.csv", EVENTS_HEAD + ok_event * 2 + "1,10,click,2026-02-30T10:00:00Z\n")},
         ["ev.csv", "column 'event_timestamp'", "not a timestamp", "row 3 ('2026-02-30T10:00:00Z')"]),
        ("float epoch", {"events": ("ev.csv", EVENTS_HEAD + "1,10,click,1793527200.5\n")},
         ["ev.csv", "column 'event_timestamp'", "row 1 ('1793527200.5')"]),
        ("unknown event_type", {"events": ("ev.csv", EVENTS_HEAD + "1,10,view,2026-11-05T00:00:00Z\n")},
         ["ev.csv", "column 'event_type'", "not one of impression, click, ranked_out", "row 1 ('view')"]),
        ("out of range", {"users": ("us.csv", "user_id,gender\n7,3\n")},
         ["us.csv", "column 'gender'", "out of range 0..2", "row 1 ('3')"]),
        ("bad tag", {"items": ("it.csv", "item_id,tags\n30,1|2\n31,1|x\n32,0\n")},
         ["it.csv", "column 'tags'", "rows 2 ('1|x'), 3 ('0')"]),
        ("duplicate user_id", {"users": ("us.csv", "user_id\n5\n6\n5\n")},
         ["us.csv", "column 'user_id'", "duplicate user_id", "rows 1 (5), 3 (5)"]),
        ("duplicate item_id", {"items": ("it.csv", "item_id\n10\n10\n")},
         ["it.csv", "column 'item_id'", "duplicate item_id", "rows 1 (10), 2 (10)"]),
        ("duplicate event_id", {"events": ("ev.csv", "event_id," + EVENTS_HEAD + "7," + ok_event + "8," + ok_event + "7," + ok_event)},
         ["ev.csv", "column 'event_id'", "duplicate event_id", "rows 1 (7), 3 (7)"]),
        ("event_id already stored on another day", {"events": ("ev.csv", "event_id," + EVENTS_HEAD + f"{stored_event_id}," + ok_event)},
         ["ev.csv", "column 'event_id'", "already in the store on day(s) 2026-11-01", f"row 1 ({stored_event_id})"]),
        ("unknown user", {"events": ("ev.csv", EVENTS_HEAD + ok_event + "999,10,click,2026-11-05T00:00:00Z\n")},
         ["ev.csv", "column 'user_id'", "found neither in the input (no --users file given) nor in the offline store", "row 2 (999)"]),
        ("unknown item", {"items": ("it.csv", "item_id\n50\n"), "events": ("ev.csv", EVENTS_HEAD + "1,51,click,2026-11-05T00:00:00Z\n")},
         ["ev.csv", "column 'item_id'", "found neither in", "it.csv", "row 1 (51)"]),
        ("null in required column", {"events": ("ev.csv", EVENTS_HEAD + ok_event + ",10,click,2026-11-05T00:00:00Z\n")},
         ["ev.csv", "column 'user_id'", "empty/null value in a required column", "row 2 ('')"]),
        ("ragged csv rows", {"events": ("ev.csv", EVENTS_HEAD + ok_event + "1,10\n" + ok_event)},
         ["ev.csv", "cannot read csv", "the header has 4 fields but row 2 (2 fields)"]),
        ("unsupported file type", {"events": ("ev.json", "{}")},
         ["ev.json", "unsupported file type '.json'"]),
        ("no such file", {"users": ("missing.csv", None)}, ["missing.csv", "no such file"]),
        ("problems of several files in one message", {
            "users": ("us.csv", "user_id,city_tier\n8,9\n"),
            "events": ("ev.csv", EVENTS_HEAD + "1,10,click,soon\n"),
        }, ["2 problem(s)", "us.csv: column 'city_tier'", "row 1 ('9')", "ev.csv: column 'event_timestamp'", "row 1 ('soon')"]),
    ]


def _stored_event_id(ws: Workspace) -> int:
    return stored_events(ws)[date(2026, 11, 1)][0]["event_id"]


@pytest.mark.parametrize("case", [c[0] for c in _bad_cases(0)])
def test_bad_input_names_file_column_rows_and_writes_nothing(settings, loaded, tmp_path, case):
    _, files, needles = next(c for c in _bad_cases(_stored_event_id(loaded)) if c[0] == case)
    paths = {}
    for option, (name, content) in files.items():
        paths[option] = tmp_path / "bad" / name
        if content is not None:
            paths[option].parent.mkdir(exist_ok=True)
            paths[option].write_text(content)
    before = tree(loaded.root)
    with pytest.raises(DataError) as err:
        ingest(settings, loaded, **paths)
    message = str(err.value)
    assert message.startswith("ingest rejected, nothing was written")
    for needle in needles:
        assert needle in message, f"{needle!r} not in:\n{message}"
    assert tree(loaded.root) == before


def test_bad_parquet_reports_rows_and_types(settings, loaded, tmp_path):
    path = tmp_path / "users.parquet"
    pq.write_table(pa.table({"user_id": [1.0, 2.5, 3.0], "gender": [True, False, True]}), path)
    before = tree(loaded.root)
    with pytest.raises(DataError) as err:
        ingest(settings, loaded, users=path)
    message = str(err.value)
    assert f"{path}: column 'user_id': not an integer: row 2 (2.5)" in message
    assert f"{path}: column 'gender': has type bool, expected integer: rows 1 (True), 2 (False), 3 (True)" in message
    assert tree(loaded.root) == before


def test_rejected_first_ingest_creates_nothing(settings, ws, tmp_path):
    users = tmp_path / "users.csv"
    users.write_text("user_id\n1\n")  # no dates and no events anywhere: cannot be dated
    with pytest.raises(DataError) as err:
        ingest(settings, ws, users=users)
    assert "column 'event_timestamp'" in str(err.value) and "row 1" in str(err.value)
    assert tree(ws.root) == {}


def test_header_only_events_file_changes_nothing(settings, loaded, tmp_path):
    events = tmp_path / "ev.csv"
    events.write_text(EVENTS_HEAD)
    before = tree(loaded.root)
    summary = ingest(settings, loaded, events=events)
    assert (summary.events, summary.days) == (0, ())
    assert tree(loaded.root) == before


def test_too_many_offending_rows_are_counted_not_listed(settings, loaded, tmp_path):
    events = tmp_path / "ev.csv"
    events.write_text(EVENTS_HEAD + "1,10,nope,2026-11-05T00:00:00Z\n" * 12)
    with pytest.raises(DataError) as err:
        ingest(settings, loaded, events=events)
    assert "rows 1 ('nope'), 2 ('nope'), 3 ('nope'), 4 ('nope'), 5 ('nope') and 7 more" in str(err.value)


# --- crash safety (real kill -9 in a child process) ---------------------------------------------
CRASH = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from twotower import offline_commit
    from twotower.config import Settings
    from twotower.ingest import ingest
    from twotower.workspace import Workspace

    when, root, users, events = sys.argv[1:]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    prepare = offline_commit.OfflineCommit.prepare
    if when == "before-commit":
        offline_commit.OfflineCommit.prepare = lambda self: die()
    elif when == "after-commit":
        offline_commit.OfflineCommit.prepare = lambda self: (prepare(self), die())
    elif when == "mid-moves":
        real, calls = os.rename, []
        def rename(src, dst):
            calls.append(src)
            if len(calls) == 2:
                die()  # day=2026-11-02 moved out, its replacement not yet in
            real(src, dst)
        os.rename = rename
    ingest(Settings(workspace=root), Workspace(Path(root)), users=Path(users), events=Path(events))
""")


@pytest.mark.parametrize("when", ["before-commit", "after-commit", "mid-moves"])
def test_kill_9_leaves_old_store_or_is_rolled_forward(settings, loaded, tmp_path, when):
    users = tmp_path / "u2.csv"
    users.write_text("user_id,signup_date\n2,2026-09-09\n4,2026-11-02\n")
    events = tmp_path / "e2.csv"
    events.write_text(EVENTS_HEAD + "4,10,click,2026-11-02T12:00:00Z\n4,11,click,2026-11-04T12:00:00Z\n")
    # Reference: the same ingest, uncrashed, on a copy of the store.
    reference = Workspace(tmp_path / "reference")
    shutil.copytree(loaded.root, reference.root)
    ingest(settings, reference, users=users, events=events)

    before = tree(loaded.offline)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTOWER_")}
    proc = subprocess.run([sys.executable, "-c", CRASH, when, str(loaded.root), str(users), str(events)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    visible = {k: v for k, v in tree(loaded.offline).items() if not k.startswith(STAGING)}
    if when == "mid-moves":
        assert visible != before  # genuinely half-applied: the next run must finish it
    else:
        assert visible == before  # the store readers see is the previous one

    rolled_forward = recover(loaded.offline)  # what the next ingest does first
    assert rolled_forward == (when != "before-commit")
    expected = before if when == "before-commit" else tree(reference.offline)
    assert tree(loaded.offline) == expected
