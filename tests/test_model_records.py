"""Examples (point-in-time join, hard negatives, frequencies) and the TFRecord writer/reader."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from materialize.examples import build_examples, item_frequencies
from model_data import data, default_spec
from tfrs_models.records import empty_examples, example_columns, frame_to_features, make_dataset, write_shard
from twotower.core.errors import DataError

DAY = date(2026, 11, 1)
ABSENT = -1  # an encoded missing value / list padding (twotower.core.features)


@pytest.fixture(scope="module")
def spec():
    return default_spec()


@pytest.fixture(scope="module")
def columns(spec):
    return example_columns(spec, 2)


def examples(events, users, items, spec, **kw):
    return build_examples(events, users, items, spec=spec, hard_negatives=2, **kw)


def ts(hhmm: str, day: str = "2026-11-01") -> pd.Timestamp:
    return pd.Timestamp(f"{day} {hhmm}", tz="UTC")


@pytest.fixture
def tiny():
    users = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "age_bucket": [1, 3, 5],
            "gender": [1, 1, 2],
            "city_tier": [0, 2, 4],
            "interest_tags": [[5], [7, 8, 9, 10], []],
            "event_timestamp": [ts("00:00", "2026-10-01"), ts("12:00"), ts("00:00", "2026-10-01")],
        }
    )
    items = pd.DataFrame(
        {
            "item_id": [10, 11, 11, 12],
            "category": [2, 4, 6, 8],
            "author_id": [100, 101, 101, 102],
            "tags": [[3], [4, 5], [4, 6], [9]],
            "event_timestamp": [ts("00:00", "2026-10-01"), ts("00:00", "2026-10-01"), ts("11:00"), ts("13:00")],
        }
    )
    rows = [  # request, user, item, type, time
        (1, 1, 10, "impression", "10:00"), (1, 1, 10, "click", "10:01"),
        (1, 1, 11, "ranked_out", "10:00"), (1, 1, 12, "ranked_out", "10:00"), (1, 1, 10, "ranked_out", "10:00"),
        (2, 1, 11, "click", "14:30"),
        (3, 2, 12, "click", "13:30"), (3, 2, 10, "ranked_out", "13:30"),
        (4, 2, 10, "click", "23:59"),
    ]  # fmt: skip
    events = pd.DataFrame(rows, columns=["request_id", "user_id", "item_id", "event_type", "t"])
    events["event_timestamp"] = [ts(t) for t in events.pop("t")]
    events.insert(0, "event_id", np.arange(len(events)))
    events.loc[len(events)] = [99, 5, 1, 10, "click", ts("09:00", "2026-11-02")]  # another day
    return events, users, items


def test_examples_are_point_in_time_correct(tiny, spec, columns):
    events, users, items = tiny
    ex = examples(events, users, items, spec, day=DAY)
    assert set(ex.columns) == {c.name for c in columns}
    assert ex["request_id"].tolist() == [1, 3, 2, 4]  # one row per click of the day, in time order
    first, at_1330, at_1430 = ex.iloc[0], ex.iloc[1], ex.iloc[2]
    # user 1 changed profile at 12:00: the 10:01 click sees the old one, the 14:30 click the new one
    u = lambda row, name: row[f"user__{name}"]  # noqa: E731
    assert (u(first, "age_bucket"), u(first, "city_tier"), list(u(first, "interest_tags"))) == (1, 0, [5, ABSENT, ABSENT])
    assert (u(at_1430, "age_bucket"), u(at_1430, "city_tier"), list(u(at_1430, "interest_tags"))) == (3, 2, [7, 8, 9])
    # item 11 changed category at 11:00; item 12 exists only from 13:00
    assert at_1430["item__category"] == 6 and list(at_1430["item__tags"]) == [4, 6, ABSENT]
    assert at_1330["item__category"] == 8 and at_1330["item__author_id"] == 102
    assert first["hour"] == 10 and at_1430["hour"] == 14
    assert first["event_timestamp"] == int(ts("10:01").value // 1000)


def test_hard_negatives_are_the_requests_ranked_out_items(tiny, spec):
    events, users, items = tiny
    ex = examples(events, users, items, spec, day=DAY).set_index("request_id")
    r1 = ex.loc[1]  # three ranked out, two kept (event order); features as of 10:01
    assert list(r1["hard_item_id"]) == [11, 12] and list(r1["hard_mask"]) == [1, 1]
    assert list(r1["hard__category"]) == [4, ABSENT]  # 11 before its 11:00 change; 12 did not exist yet
    assert list(r1["hard__tags"]) == [4, 5, ABSENT, ABSENT, ABSENT, ABSENT]
    r2 = ex.loc[2]  # nothing ranked out: padding
    assert list(r2["hard_item_id"]) == [-1, -1] and list(r2["hard_mask"]) == [0, 0]
    r3 = ex.loc[3]
    assert list(r3["hard_item_id"]) == [10, -1] and list(r3["hard_mask"]) == [1, 0]


def test_item_frequencies_and_probabilities(tiny, spec):
    events, users, items = tiny
    day = events.loc[events["event_timestamp"].dt.date == DAY]
    raw = item_frequencies(day).set_index("item_id")
    assert raw["clicks"].to_dict() == {10: 2, 11: 1, 12: 1}
    assert raw["prob"].to_numpy() == pytest.approx([0.5, 0.25, 0.25])
    smooth = item_frequencies(day, item_ids=[10, 11, 12, 13]).set_index("item_id")
    assert smooth.loc[13, "prob"] == pytest.approx(1 / 8) and smooth["prob"].sum() == pytest.approx(1.0)
    ex = examples(events, users, items, spec, day=DAY, frequencies=raw.reset_index())
    assert ex.set_index("request_id").loc[4, "item_prob"] == pytest.approx(0.5)


def test_missing_column_is_named(tiny, tmp_path, spec, columns):
    events, users, items = tiny
    with pytest.raises(DataError, match="feature view 'user_profile'.*missing column.*city_tier"):
        examples(events, users.drop(columns="city_tier"), items, spec)
    ex = examples(events, users, items, spec)
    target = tmp_path / "shard.tfrecord"
    with pytest.raises(DataError, match="hard_prob"):
        write_shard(ex.drop(columns="hard_prob"), target, columns)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def _read_all(files, columns, **kw) -> dict[str, np.ndarray]:
    batches = list(make_dataset(files, 64, columns=columns, **kw))
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in batches[0]}


def test_tfrecord_round_trip_keeps_values_and_order(tmp_path, columns):
    ex = data().examples[data().days[0]]
    halves = [ex.iloc[: len(ex) // 2], ex.iloc[len(ex) // 2 :]]
    files = [tmp_path / f"part-{i}.tfrecord" for i in range(2)]
    assert [write_shard(h, f, columns) for h, f in zip(halves, files)] == [len(h) for h in halves]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-0.tfrecord", "part-1.tfrecord"]  # no temp files
    want = frame_to_features(ex, columns)
    got = _read_all(files, columns)  # no shuffle buffer: exactly the given order
    names = [c.name for c in columns]
    assert set(got) == set(names)
    for name in names:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert got["hard__tags"].shape == (len(ex), 2, 3)

    shuffled = _read_all(files, columns, shuffle_buffer=1000, seed=3)
    assert not np.array_equal(shuffled["request_id"], want["request_id"])
    order = np.lexsort((shuffled["item_id"], shuffled["request_id"]))
    ref = np.lexsort((want["item_id"], want["request_id"]))
    for name in ("request_id", "item_id", "user__interest_tags", "hard__tags", "item_prob"):
        np.testing.assert_array_equal(shuffled[name][order], want[name][ref], err_msg=name)


def test_empty_partition_writes_an_empty_shard(tiny, tmp_path, spec, columns):
    events, users, items = tiny
    ex = examples(events.iloc[:0], users, items, spec)
    meta = empty_examples(columns)  # what Dask's meta= says
    assert ex[list(meta.columns)].dtypes.to_dict() == meta.dtypes.to_dict()
    path = tmp_path / "empty.tfrecord"
    assert write_shard(ex, path, columns) == 0
    assert path.is_file() and list(make_dataset([path], 8, columns=columns)) == []


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_encoder_equals_the_protobuf_library(seed):
    """``example_codec`` bytes parse to exactly the message protobuf itself would build, for
    varint edge cases (0, 127/128, 2^63-1, negatives = 10 bytes) and float lists."""
    import tensorflow as tf

    from tfrs_models.example_codec import encode_examples

    rng = np.random.default_rng(seed)
    edges = np.array([0, 1, 127, 128, 16383, 16384, 2**35, 2**63 - 1, -1, -2, -(2**63)], dtype=np.int64)
    n = 64
    arrays = {
        "scalar": rng.choice(edges, (n, 1)),
        "wide": rng.integers(-(2**40), 2**40, (n, 7)),
        "small": rng.integers(0, 100, (n, 3)),  # the all-one-byte fast path
        "probs": rng.normal(size=(n, 2)).astype(np.float32),
    }
    kinds = {"scalar": "int64", "wide": "int64", "small": "int64", "probs": "float32"}
    records = encode_examples(arrays, kinds)
    assert len(records) == n
    for i, record in enumerate(records):
        feature = {
            k: tf.train.Feature(int64_list=tf.train.Int64List(value=a[i].tolist())) if kinds[k] == "int64"
            else tf.train.Feature(float_list=tf.train.FloatList(value=a[i].tolist()))
            for k, a in arrays.items()
        }  # fmt: skip
        assert tf.train.Example.FromString(record) == tf.train.Example(features=tf.train.Features(feature=feature))
