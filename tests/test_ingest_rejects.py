"""``twotower ingest`` of bad input, and ingests killed mid-write: nothing half-done is visible."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from twotower.core.errors import DataError
from conftest import write_default_spec
from model_data import spec_at
from twotower.ingest.job import ingest
from twotower.ingest.commit import STAGING, recover
from twotower.core.workspace import Workspace

from ingest_support import tree, stored_events, csv_inputs, loaded  # noqa: F401,F811  (fixtures)


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
        ("bad tag", {"items": ("it.csv", "item_id,tags\n30,1|2\n31,1|x\n32,0|2147483648\n")},  # Array(Int32)
         ["it.csv", "column 'tags'", "not a list of int32", "rows 2 ('1|x'), 3 ('0|2147483648')"]),
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
        ingest(settings, loaded, spec_at(loaded), **paths)
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
        ingest(settings, loaded, spec_at(loaded), users=path)
    message = str(err.value)
    assert f"{path}: column 'user_id': not an integer: row 2 (2.5)" in message
    assert f"{path}: column 'gender': has type bool, expected integer: rows 1 (True), 2 (False), 3 (True)" in message
    assert tree(loaded.root) == before


def test_rejected_first_ingest_creates_nothing(settings, ws, tmp_path):
    users = tmp_path / "users.csv"
    users.write_text("user_id\n1\n")  # no dates and no events anywhere: cannot be dated
    with pytest.raises(DataError) as err:
        ingest(settings, ws, spec_at(ws), users=users)
    assert "column 'event_timestamp'" in str(err.value) and "row 1" in str(err.value)
    assert tree(ws.root) == {}


def test_header_only_events_file_changes_nothing(settings, loaded, tmp_path):
    events = tmp_path / "ev.csv"
    events.write_text(EVENTS_HEAD)
    before = tree(loaded.root)
    summary = ingest(settings, loaded, spec_at(loaded), events=events)
    assert (summary.events, summary.days) == (0, ())
    assert tree(loaded.root) == before


def test_too_many_offending_rows_are_counted_not_listed(settings, loaded, tmp_path):
    events = tmp_path / "ev.csv"
    events.write_text(EVENTS_HEAD + "1,10,nope,2026-11-05T00:00:00Z\n" * 12)
    with pytest.raises(DataError) as err:
        ingest(settings, loaded, spec_at(loaded), events=events)
    assert "rows 1 ('nope'), 2 ('nope'), 3 ('nope'), 4 ('nope'), 5 ('nope') and 7 more" in str(err.value)


# --- crash safety (real kill -9 in a child process) ---------------------------------------------
CRASH = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from twotower.ingest import commit as offline_commit
    from twotower.core.config import Settings
    from twotower.core.features import FeatureSpec
    from twotower.ingest.job import ingest
    from twotower.core.workspace import Workspace

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
    spec = FeatureSpec.load(Path(root) / "feast" / "spec.json")
    ingest(Settings(workspace=root), Workspace(Path(root)), spec, users=Path(users), events=Path(events))
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
    ingest(settings, reference, spec_at(reference), users=users, events=events)

    write_default_spec(loaded)  # what the crashing process reads its columns from
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
