"""``twotower ingest``: user files -> offline store, exactly, and again the same (idempotent)."""

from __future__ import annotations

import shutil
from datetime import date

import pyarrow.parquet as pq

from model_data import spec_at
from twotower.ingest.job import ingest
from twotower.ingest.commit import STAGING
from twotower.core.workspace import Workspace

from ingest_support import H0, utc, EXPECTED_USERS, write_parquet_inputs, tree, stored_events, check_world, csv_inputs, loaded  # noqa: F401,F811  (fixtures)


# --- round trip ----------------------------------------------------------------------------
def test_csv_round_trip_maps_every_notation(settings, ws, csv_inputs):
    summary = ingest(settings, ws, spec_at(ws), **csv_inputs)
    check_world(ws)
    assert (summary.users, summary.users_added, summary.items, summary.events) == (3, 3, 4, 6)
    assert summary.days == (date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3))
    assert summary.generated_event_ids == 6
    assert summary.ignored_columns == {str(csv_inputs["users"]): ("signup_date", "nickname")}  # not declared
    assert not (ws.offline / STAGING).exists()


def test_parquet_round_trip_gives_the_same_store_byte_for_byte(settings, tmp_path, csv_inputs):
    from twotower.core.config import load_settings

    ws_pq = Workspace(tmp_path / "ws-parquet")
    ingest(load_settings(workspace=ws_pq.root), ws_pq, spec_at(ws_pq), **write_parquet_inputs(tmp_path / "pq"))
    check_world(ws_pq)
    ws_csv = Workspace(tmp_path / "ws-csv")
    ingest(load_settings(workspace=ws_csv.root), ws_csv, spec_at(ws_csv), **csv_inputs)
    assert tree(ws_pq.offline) == tree(ws_csv.offline)


def test_simulated_store_ingests_back_unchanged(small_world, tmp_path):
    """Files in the simulator's layout (event_id, request_id given) come back identical."""
    from twotower.core.config import load_settings

    _, sim = small_world
    folder = tmp_path / "export"
    folder.mkdir()
    shutil.copy(sim.users_path, folder / "users.parquet")
    shutil.copy(sim.items_path, folder / "items.parquet")
    pq.write_table(pq.read_table(sim.events_dir), folder / "events.parquet")
    ws = Workspace(tmp_path / "ws")
    summary = ingest(load_settings(workspace=ws.root), ws, spec_at(ws), users=folder / "users.parquet",
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
    summary = ingest(settings, loaded, spec_at(loaded), **csv_inputs)
    assert tree(loaded.root) == before
    assert (summary.users_replaced, summary.items_replaced) == (3, 4)


def test_reingest_upserts_ids_and_replaces_only_incoming_days(settings, loaded, tmp_path):
    before = tree(loaded.offline)
    users = tmp_path / "more_users.csv"
    users.write_text("user_id,age_bucket,signup_date\n2,5,2026-09-09\n4,1,2026-11-02\n")
    events = tmp_path / "day2.csv"
    events.write_text("user_id,item_id,event_type,event_timestamp\n"
                      "4,10,click,2026-11-02T12:00:00Z\n2,13,impression,2026-11-02T13:00:00Z\n")
    summary = ingest(settings, loaded, spec_at(loaded), users=users, events=events)
    assert (summary.users_added, summary.users_replaced, summary.days) == (1, 1, (date(2026, 11, 2),))

    got = {u["user_id"]: u for u in pq.read_table(loaded.users_path).to_pylist()}
    assert sorted(got) == [1, 2, 3, 4]
    assert got[1] == EXPECTED_USERS[0] and got[3] == EXPECTED_USERS[2]  # untouched
    assert got[2]["age_bucket"] == 5 and got[2]["gender"] is None  # replaced as a whole
    assert got[2]["event_timestamp"] == H0  # no timestamp given (signup_date is not declared): the history start
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
    ingest(settings, ws, spec_at(ws), users=users, items=items, events=events)
    first = [e["event_id"] for e in stored_events(ws)[date(2026, 11, 1)]]
    assert len(set(first)) == 2
    events.write_text("event_id,user_id,item_id,event_type,event_timestamp\n"
                      ",1,5,impression,2026-11-01T00:00:00Z\n,1,5,impression,2026-11-01T00:00:00Z\n")
    ingest(settings, ws, spec_at(ws), events=events)  # same content (an empty event_id column): same IDs
    assert [e["event_id"] for e in stored_events(ws)[date(2026, 11, 1)]] == first


def test_day_partitions_split_into_part_files(tmp_path, csv_inputs):
    from twotower.core.config import load_settings

    settings = load_settings(workspace=tmp_path / "ws")
    settings.ingest.rows_per_file = 2
    ws = Workspace(settings.workspace)
    ingest(settings, ws, spec_at(ws), **csv_inputs)
    day1 = ws.events_day_dir(date(2026, 11, 1))
    assert sorted(p.name for p in day1.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert [pq.read_metadata(p).num_rows for p in sorted(day1.iterdir())] == [2, 1]
