"""The incremental update's parts on their own: file event log, chain state, newest-wins, windows."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from twotower.core.errors import DataError, UserError
from twotower.pipelines.incremental.chain import next_stamps
from twotower.pipelines.incremental.examples import RecentRankedOut
from twotower.pipelines.incremental.freshness import BUCKETS, FreshnessRecorder
from twotower.pipelines.incremental.push import NONE, landed, newer
from twotower.pipelines.incremental.state import ChainState, StateStore
from twotower.research.simulate.clicks import user_click_events
from twotower.stream.file_log import FileEventLog

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
S = 1_000_000


def events(n: int, start: int = 0, types=("impression", "click", "ranked_out")) -> pd.DataFrame:
    i = np.arange(start, start + n)
    return pd.DataFrame({
        "event_id": i, "request_id": i // 3, "user_id": i % 7, "item_id": 100 + i % 11,
        "event_type": [types[k % len(types)] for k in i], "position": (i % 8).astype(np.int32),
        "event_timestamp": [T0 + timedelta(seconds=int(k)) for k in i],
    })  # fmt: skip


# --- file event log ---------------------------------------------------------------------------


def test_file_log_reads_in_order_after_a_position_and_commits(tmp_path):
    log = FileEventLog(tmp_path / "events")
    assert log.end() == log.beginning == "0" and len(log.read("0", 10)) == 0
    assert log.append(events(5)) == "5"
    assert log.append(events(4, start=5)) == "9"
    batch = log.read("3", 4)  # spans both chunks
    assert (batch.start, batch.end) == ("3", "7") and batch.events["event_id"].tolist() == [3, 4, 5, 6]
    assert batch.positions.tolist() == ["4", "5", "6", "7"] and batch.position_before(2) == "5"
    assert str(batch.events["appended_at"].dtype) == "datetime64[us, UTC]"
    assert log.read("9", 100).end == "9" and log.lag("3") == 6
    assert log.read_before("7", 3)["event_id"].tolist() == [4, 5, 6]
    assert log.committed("g") is None
    log.commit("g", "7")
    assert log.committed("g") == "7" and log.committed("other") is None
    with pytest.raises(UserError, match="outside 0..9"):
        log.read("10", 1)


@pytest.fixture(params=["file", "redis"])
def stream(request, tmp_path):
    if request.param == "file":
        yield FileEventLog(tmp_path / "events")
        return
    from incremental_support import redis_server
    from twotower.core.config import StreamSettings
    from twotower.stream.redis_streams import RedisEventStream

    with redis_server() as port:
        stream = RedisEventStream(StreamSettings(type="redis", redis_port=port, name="events"))
        yield stream
        stream.close()


def test_the_window_before_a_position_is_what_a_consumer_there_has_read(stream):
    """A resumed updater rebuilds its hard-negative window with ``read_before(position)``: it must
    be the tail of what an uninterrupted reader consumed up to that position, the entry at the
    position included (a Redis position is the ID of the last entry read)."""
    stream.append(events(5))
    stream.append(events(4, start=5))
    position, consumed = stream.beginning, []
    while len(batch := stream.read(position, 3)):
        consumed += batch.events["event_id"].tolist()
        position = batch.end
        for count in (1, 4, 20):
            assert stream.read_before(position, count)["event_id"].tolist() == consumed[-count:], (position, count)
    assert consumed == list(range(9)) and stream.read_before(stream.beginning, 5).empty


def test_a_bad_append_names_the_column_and_writes_nothing(tmp_path):
    log = FileEventLog(tmp_path / "events")
    log.append(events(3))
    with pytest.raises(DataError, match="item_id"):
        log.append(events(2).drop(columns=["item_id"]))
    with pytest.raises(DataError, match="event_type"):
        log.append(events(2).assign(event_type="like"))
    with pytest.raises(DataError, match="user_id"):
        log.append(events(2).assign(user_id=["a", "b"]))
    assert log.end() == "3" and len(list(log.chunks_dir.iterdir())) == 1


def test_a_torn_append_is_invisible_and_cleaned_up(tmp_path):
    log = FileEventLog(tmp_path / "events")
    log.append(events(3))
    (log.chunks_dir / ".tmp-crashed").write_bytes(b"half a chunk")  # kill -9 during an append
    assert log.end() == "3" and len(log.read("0", 10)) == 3
    assert log.append(events(2, start=3)) == "5"
    assert not (log.chunks_dir / ".tmp-crashed").exists()


# --- chain state ------------------------------------------------------------------------------


def state(position: str, table: np.ndarray, it: int) -> ChainState:
    return ChainState("g00001-x", position, {"table": table.copy(), "stamps": np.zeros(len(table), np.int64),
                                             "iterations": np.array(it)})  # fmt: skip


def test_state_deltas_hold_only_changed_rows_and_replay_to_the_same_state(tmp_path):
    store = StateStore(tmp_path / "chain", compact_every=100)
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    s = state("0", table, 0)
    store.create(s)
    s.arrays["table"][[2, 7]] += 1
    s.arrays["iterations"] = np.array(3)
    s.position = "120"
    assert store.append(s) == 1
    with np.load(store.deltas_dir / "000000000001.npz") as z:
        assert z["rows/table"].tolist() == [2, 7] and z["rows/stamps"].tolist() == []
    s.arrays["table"][5] = -1
    s.position = "300"
    store.append(s)
    (store.deltas_dir / ".tmp-crashed").write_bytes(b"x")  # a delta whose write never finished
    loaded = StateStore(tmp_path / "chain").load()
    assert (loaded.position, loaded.seq, int(loaded.arrays["iterations"])) == ("300", 2, 3)
    np.testing.assert_array_equal(loaded.arrays["table"], s.arrays["table"])
    assert not (store.deltas_dir / ".tmp-crashed").exists()


def test_compaction_folds_deltas_into_a_snapshot(tmp_path):
    store = StateStore(tmp_path / "chain", compact_every=2)
    s = state("0", np.zeros((4, 2), np.float32), 0)
    store.create(s)
    for k in range(1, 4):
        s.arrays["table"][k] = k
        s.position = str(k * 10)
        store.append(s)
    assert json.loads((store.snapshot_dir / "meta.json").read_text())["seq"] == 2
    assert [p.name for p in sorted(store.deltas_dir.iterdir())] == ["000000000003.npz"]
    loaded = StateStore(tmp_path / "chain").load()
    assert loaded.position == "30" and loaded.seq == 3
    np.testing.assert_array_equal(loaded.arrays["table"], s.arrays["table"])


# --- newest wins ------------------------------------------------------------------------------


def test_newest_wins_compares_generation_first_then_whole_seconds():
    g1, g2 = "g00001-2026-11-01", "g00002-2026-11-02"
    t = 1_800_000_000 * S
    stored_gen = [None, g1, g1, g1, g1, g2, g1]
    stored_ts = np.array([NONE, t, t, t + 400_000, t, t - 100 * S, t + 100 * S])
    pushed = np.array([t, t + S, t - S, t + 900_000, t, t + 100 * S, t])
    gen = [g1, g1, g1, g1, g1, g1, g2]
    got = [bool(newer(g, pushed[i : i + 1], stored_gen[i : i + 1], stored_ts[i : i + 1])[0]) for i, g in enumerate(gen)]
    # empty slot, later second, earlier second, same second, equal, older generation, newer generation
    assert got == [True, True, False, False, False, False, True]
    assert landed(g1, np.array([t]), [g1], np.array([t + 5])).tolist() == [True]


def test_a_changed_embedding_is_always_stamped_in_a_later_second():
    prev = np.array([0, 10 * S + 500_000, 10 * S, 50 * S])
    newest = np.array([7 * S + 3, 10 * S + 900_000, 12 * S + 1, 20 * S])  # new / same second / later / late event
    got = next_stamps(prev, newest)
    assert got.tolist() == [7 * S + 3, 11 * S, 12 * S + 1, 51 * S]
    assert (got // S > prev // S).all()


# --- hard negatives window --------------------------------------------------------------------


def test_the_ranked_out_window_rebuilt_at_a_position_equals_the_streamed_one():
    stream = events(60)
    streamed = RecentRankedOut(lookback=25)
    for lo in range(0, 40, 8):
        streamed.add(stream.iloc[lo : lo + 8])
    rebuilt = RecentRankedOut(lookback=25, before=stream.iloc[:40])
    a, b = streamed.frame().reset_index(drop=True), rebuilt.frame().reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["event_type"]) == {"ranked_out"} and a["event_id"].min() >= 15


# --- emitted clicks ---------------------------------------------------------------------------


def test_user_clicks_are_realistic_requests_ending_now():
    items = pd.DataFrame({"item_id": np.arange(40), "category": np.arange(40) % 4,
                          "event_timestamp": pd.Timestamp("2026-11-01", tz="UTC")})  # fmt: skip
    now = datetime(2026, 11, 29, 12, tzinfo=timezone.utc)
    ev = user_click_events(9, 2, 5, items, now, impressions=6, ranked_out=3, seed=1)
    cat = dict(zip(items.item_id, items.category))
    clicks, ranked = ev[ev.event_type == "click"], ev[ev.event_type == "ranked_out"]
    assert len(clicks) == 5 and {cat[i] for i in clicks.item_id} == {2}
    assert len(ranked) == 3 * 3 and 2 not in {cat[i] for i in ranked.item_id}
    assert (ev.user_id == 9).all() and ev.event_id.is_unique and ev.event_timestamp.is_monotonic_increasing
    assert ev.event_timestamp.max() <= pd.Timestamp(now)
    for _, req in ev.groupby("request_id"):  # every click was shown in its request first
        shown = set(req.loc[req.event_type == "impression", "item_id"])
        assert set(req.loc[req.event_type == "click", "item_id"]) <= shown
    with pytest.raises(UserError, match="--category 7"):
        user_click_events(9, 7, 5, items, now, impressions=6, ranked_out=3)


# --- freshness file ---------------------------------------------------------------------------


def test_freshness_histograms_are_cumulative_and_continue_across_runs(tmp_path):
    path = tmp_path / "freshness.json"
    rec = FreshnessRecorder(path, window=10)
    rec.observe(np.array([0.1, 0.4, 3.0]), np.array([0.1, 0.2, 0.3]))
    data = rec.write(generation="g1")
    h = data["histogram"]
    assert h["le"][-1] == "+Inf" and len(h["le"]) == len(BUCKETS) + 1
    assert h["event_to_visible_seconds"]["buckets"][:3] == [1, 2, 2] and h["event_to_visible_seconds"]["count"] == 3
    assert data["window"]["event_to_visible_seconds"]["max"] == 3.0
    again = FreshnessRecorder(path, window=10)  # a restarted updater
    again.observe(np.array([0.2]), np.array([0.2]))
    h2 = again.write(generation="g1")["histogram"]["event_to_visible_seconds"]
    assert h2["count"] == 4 and h2["buckets"][0] == 2
    assert json.loads(path.read_text())["format"] == "twotower-freshness/1"
