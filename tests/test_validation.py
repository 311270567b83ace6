"""The data-quality gate, with real GX: a clean day passes; each kind of corruption fails with
the expectation that catches it named, together with what GX observed."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import write_default_spec
from twotower.core.config import load_settings
from twotower.core.errors import DataError, ValidationFailed
from twotower.core.workspace import Workspace
from validation import bounds
from validation.gate import validate_day
from validation.history import DayProfile
from validation.report import raise_if_failed

DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)


@pytest.fixture
def world(small_world, tmp_path):
    """A private copy of the shared simulated offline store (3 days), safe to corrupt."""
    _, source = small_world
    settings = load_settings(workspace=tmp_path / "ws")
    ws = Workspace(settings.workspace)
    shutil.copytree(source.offline, ws.offline)
    write_default_spec(ws)
    return settings, ws


def _part(ws: Workspace, day: date = DAY2):
    return ws.events_day_dir(day) / "part-00000.parquet"


def _rewrite(path, change) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def _set(table: pa.Table, column: str, rows: list[int], value) -> pa.Table:
    """``value`` (None for null) in ``column`` at ``rows``, type kept."""
    mask = np.zeros(table.num_rows, bool)
    mask[rows] = True
    col = table[column]
    new = pc.if_else(pa.array(mask), pa.scalar(value, col.type), col)
    return table.set_column(table.column_names.index(column), column, new)


def _only_failure(report, suite: str, expectation: str, column: str | None):
    hits = [f for f in report.failures if (f.suite, f.expectation, f.column) == (suite, expectation, column)]
    names = [(f.suite, f.expectation, f.column) for f in report.failures]
    assert len(hits) == 1, f"{(suite, expectation, column)} not among failures {names}"
    return hits[0]


def _assert_gate_fails(report, failure) -> None:
    """The report, its summary JSON and the raised error all name the failed expectation."""
    assert not report.success
    text = report.format()
    assert failure.expectation in text and (failure.column or "") in text
    assert f"observed: {failure.describe_observed()}" in text
    with pytest.raises(ValidationFailed) as err:
        raise_if_failed(report)
    assert failure.expectation in str(err.value) and err.value.exit_code == 3
    summary = json.loads(report.summary_path.read_text())
    assert summary["success"] is False and summary["docs_path"] == str(report.docs_path)
    named = {
        (f["suite"], f["expectation"], f["column"]): f["observed"]
        for f in summary["suites"][failure.suite]["failures"]
    }
    assert named[(failure.suite, failure.expectation, failure.column)] == failure.observed


def test_clean_days_pass_with_summary_and_data_docs(world):
    settings, ws = world
    for day in (DAY1, DAY2):
        report = validate_day(settings, ws, day)
        assert report.success, report.format()
        assert report.failures == [] and "PASSED" in report.format()
        raise_if_failed(report)  # no exception
    summary = json.loads(report.summary_path.read_text())
    assert report.summary_path == ws.gx_dir / "summaries" / "2026-11-02.json"
    assert summary["success"] is True
    assert set(summary["suites"]) == {"schema", "events", "users", "items", "event_links", "day_stats"}
    assert summary["evaluated"] == report.evaluated > 50
    # Day 2 is held to a band around day 1, not to the absolute bounds only.
    day1_rows = pq.read_metadata(_part(ws, DAY1)).num_rows
    assert summary["parameters"]["events_min_rows"] == int(day1_rows * 0.5)
    assert summary["facts"]["reference_day"] == "2026-11-01"
    # GX artefacts generated from the code, inside the workspace.
    assert report.docs_path.is_file() and ws.gx_dir in report.docs_path.parents
    assert all(v["docs_page"] and (ws.gx_dir / v["docs_page"]).is_file() for v in summary["suites"].values())
    assert (ws.gx_dir / "expectations" / "events.json").is_file()
    assert (ws.gx_dir / "checkpoints" / "daily_gate.json").is_file()
    assert not any((ws.gx_dir / "uncommitted" / "batches").rglob("*.parquet"))  # staged frames cleaned


def test_null_user_ids(world):
    settings, ws = world
    _rewrite(_part(ws), lambda t: _set(t, "user_id", [3, 10, 11, 50, 99], None))
    report = validate_day(settings, ws, DAY2)
    failure = _only_failure(report, "events", "expect_column_values_to_not_be_null", "user_id")
    assert failure.observed["unexpected_count"] == 5
    _assert_gate_fails(report, failure)


def test_unknown_item_ids(world):
    settings, ws = world
    _rewrite(_part(ws), lambda t: _set(t, "item_id", [0, 7, 8], 987_654_321))
    report = validate_day(settings, ws, DAY2)
    failure = _only_failure(report, "event_links", "expect_column_values_to_be_null", "unknown_item_id")
    assert failure.observed["unexpected_count"] == 3
    assert failure.observed["examples"] == [987_654_321] * 3
    assert "987654321" in report.format()
    assert [f.suite for f in report.failures] == ["event_links"]


def test_event_before_the_users_profile_existed(world):
    settings, ws = world
    events = pq.read_table(_part(ws))
    user = events["user_id"][0].as_py()
    late = pa.scalar(events["event_timestamp"][-1].as_py() + timedelta(hours=1), events["event_timestamp"].type)

    def sign_up_later(users: pa.Table) -> pa.Table:
        rows = np.nonzero(users["user_id"].to_numpy() == user)[0].tolist()
        return _set(users, "event_timestamp", rows, late.as_py())

    _rewrite(ws.users_path, sign_up_later)
    report = validate_day(settings, ws, DAY2)
    failure = _only_failure(report, "event_links", "expect_column_values_to_be_null", "user_id_before_profile")
    assert set(failure.observed["examples"]) == {user}
    _assert_gate_fails(report, failure)


def test_truncated_day(world):
    settings, ws = world
    _rewrite(_part(ws), lambda t: t.slice(0, t.num_rows // 10))
    report = validate_day(settings, ws, DAY2)
    failure = _only_failure(report, "events", "expect_table_row_count_to_be_between", None)
    assert failure.observed == pq.read_metadata(_part(ws)).num_rows
    assert failure.expected["min_value"] == pq.read_metadata(_part(ws, DAY1)).num_rows // 2
    _assert_gate_fails(report, failure)


def test_schema_changes_renamed_missing_and_mistyped_columns(world):
    settings, ws = world

    def rename_and_retype(t: pa.Table) -> pa.Table:
        t = t.set_column(2, "user_id", t["user_id"].cast(pa.string()))
        return t.rename_columns(["itemid" if c == "item_id" else c for c in t.column_names])

    _rewrite(_part(ws), rename_and_retype)
    _rewrite(ws.users_path, lambda t: t.drop(["city_tier"]))
    report = validate_day(settings, ws, DAY2)
    for column, observed in (("events.item_id", "<missing>"), ("users.city_tier", "<missing>"),
                             ("events.user_id", "string")):
        failure = _only_failure(report, "schema", "expect_column_values_to_be_in_set", column)
        assert failure.observed["examples"] == [observed]
        assert failure.expected["value_set"] == ["int64" if column != "users.city_tier" else "int32"]
        _assert_gate_fails(report, failure)
    events_order = _only_failure(report, "events", "expect_table_columns_to_match_ordered_list", None)
    assert "itemid" in events_order.observed and "item_id" not in events_order.observed
    users_columns = _only_failure(report, "users", "expect_table_columns_to_match_set", None)
    assert "city_tier" not in users_columns.observed and "city_tier" in users_columns.expected["column_set"]
    # Without events.item_id the cross-table facts cannot be computed: GX says so, too.
    links = _only_failure(report, "event_links", "expect_table_row_count_to_equal", None)
    assert links.observed == 0 and "cross-table checks (event_links) not computed" in report.notes


def test_timestamps_outside_the_day(world):
    settings, ws = world

    def shift(t: pa.Table) -> pa.Table:
        ts = t["event_timestamp"].to_pylist()
        for i in (1, 2, 3, 4):
            ts[i] = ts[i] + timedelta(days=1)
        return t.set_column(6, "event_timestamp", pa.array(ts, t["event_timestamp"].type))

    _rewrite(_part(ws), shift)
    report = validate_day(settings, ws, DAY2)
    failure = _only_failure(report, "events", "expect_column_values_to_be_between", "event_timestamp")
    assert failure.observed["unexpected_count"] == 4
    assert all(str(x).startswith("2026-11-03") for x in failure.observed["examples"])
    _assert_gate_fails(report, failure)


def test_duplicate_event_ids_across_part_files(world):
    settings, ws = world
    again = pq.read_table(_part(ws)).slice(100, 3)  # a re-delivered chunk in a second file
    pq.write_table(again, ws.events_day_dir(DAY2) / "part-00001.parquet")
    report = validate_day(settings, ws, DAY2)
    failure = _only_failure(report, "events", "expect_column_values_to_be_unique", "event_id")
    assert failure.observed["unexpected_count"] == 6  # 3 ids, each twice
    _assert_gate_fails(report, failure)


def test_out_of_range_profile_value(world):
    settings, ws = world
    _rewrite(ws.users_path, lambda t: _set(t, "age_bucket", [5, 6], 9))
    report = validate_day(settings, ws, DAY2)
    failure = _only_failure(report, "users", "expect_column_values_to_be_between", "age_bucket")
    assert failure.observed["examples"] == [9, 9]
    assert failure.expected["min_value"] == 0 and failure.expected["max_value"] == 6
    _assert_gate_fails(report, failure)


def test_share_of_never_seen_users_is_bounded(world):
    settings, ws = world
    settings.validation.max_new_user_share = 0.001
    report = validate_day(settings, ws, DAY2)
    failure = _only_failure(report, "day_stats", "expect_column_mean_to_be_between", "new_user_share")
    facts = json.loads(report.summary_path.read_text())["facts"]
    assert failure.observed == pytest.approx(facts["new_users"] / facts["active_users"])
    assert failure.observed > 0.001
    _assert_gate_fails(report, failure)


def test_missing_day_is_a_clear_error(world):
    settings, ws = world
    with pytest.raises(DataError, match=r"day=2027-01-01"):
        validate_day(settings, ws, date(2027, 1, 1))
    assert not (ws.gx_dir / "summaries" / "2027-01-01.json").exists()


def test_bounds_first_day_absolute_then_band():
    cfg = load_settings().validation
    first = bounds.parameters(cfg, DAY1, None, first_day=True)
    assert (first["events_min_rows"], first["events_max_rows"]) == (cfg.min_events, cfg.max_events)
    assert (first["click_rate_min"], first["click_rate_max"]) == (cfg.min_click_rate, cfg.max_click_rate)
    assert first["new_user_share_max"] == 1.0
    prev = DayProfile(DAY1, rows=1000, clicks=100, impressions=500, user_ids=np.arange(3), item_ids=np.arange(3))
    second = bounds.parameters(cfg, DAY2, prev, first_day=False)
    assert (second["events_min_rows"], second["events_max_rows"]) == (500, 1500)
    assert second["click_rate_min"] == pytest.approx(0.1) and second["click_rate_max"] == pytest.approx(0.3)
    assert second["new_user_share_max"] == cfg.max_new_user_share
    assert second["day_start"].isoformat() == "2026-11-02T00:00:00+00:00"
