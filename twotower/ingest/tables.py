"""Map one user table (users, items or events) onto the offline store schema.

Pure: a raw ``pa.Table`` in, a table in the exact ``twotower.core.schema`` layout plus the list of
problems out. The input contract follows from the feature spec (``input_columns``): a users or
items file has the tower's join key, its declared fields (parsed by their Feast dtype, within
their declared min/max) and the view's timestamp; an events file has the documented columns
with the IDs typed as the entities declare them (docs/data-schema.md).

Defaults are chosen so that nothing needs guessing later:
- a missing feature value stays null (the towers handle missing values explicitly);
- a profile or item whose validity start is unknown is valid from the start of the event
  history (midnight UTC of the earliest event day, incoming or stored), so every event's
  point-in-time join finds it, while the timestamp stays recent enough for Feast's TTL-bounded
  materialization (a 1970 "always" would never reach the online store);
- a missing ``event_id`` is a hash of the event's content, so re-ingesting the same file
  yields the same IDs (idempotent) and IDs stay unique across files without a counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from twotower.core import schema
from twotower.core.encode import hash_strings
from twotower.core.features import Feature, FeatureSpec, Tower
from twotower.ingest.columns import (
    INT32_MAX,
    INT64_MAX,
    Parsed,
    parse_bool,
    parse_choice,
    parse_float,
    parse_int,
    parse_list,
    parse_string,
    parse_timestamp,
)


@dataclass(frozen=True)
class Column:
    """One accepted input column: how to parse it and what a missing value becomes."""

    name: str
    parse: Callable[[pa.Array], Parsed]
    required: bool = False
    default: object = None  # None: derived from other columns (see _finish_*)


def _int(lo: int, hi: int) -> Callable[[pa.Array], Parsed]:
    return lambda arr: parse_int(arr, lo, hi)


_ID = _int(-INT64_MAX, INT64_MAX)
_EVENT_TYPE = lambda arr: parse_choice(arr, schema.EVENT_TYPES)  # noqa: E731
INT32_MIN = -INT32_MAX - 1


def _id_parser(id_type: str) -> Callable[[pa.Array], Parsed]:
    return _ID if id_type == "int" else parse_string


def _bounded_float(f: Feature) -> Callable[[pa.Array], Parsed]:
    def parse(arr: pa.Array) -> Parsed:
        p = parse_float(arr)
        lo, hi = (-np.inf if f.min is None else f.min), (np.inf if f.max is None else f.max)
        outside = ((p.values < lo) | (p.values > hi)) & ~p.null
        for _, mask in p.bad:
            outside &= ~mask
        p.bad.append((f"out of the declared range {f.min}..{f.max}", outside))
        return p

    return parse


def feature_parser(f: Feature) -> Callable[[pa.Array], Parsed]:
    """The parser of a declared field, from its Feast dtype (and tags min / max)."""
    element = f.dtype[6:-1] if f.dtype.startswith("Array(") else None
    base = element or f.dtype
    if base in ("Int32", "Int64"):
        lo, hi = (INT32_MIN, INT32_MAX) if base == "Int32" else (-INT64_MAX, INT64_MAX)
        lo = max(lo, int(f.min)) if f.min is not None else lo
        hi = min(hi, int(f.max)) if f.max is not None else hi
        scalar = _int(lo, hi)
    elif base in ("Float32", "Float64"):
        scalar = _bounded_float(f) if element is None else parse_float
    elif base == "Bool":
        scalar = parse_bool
    else:
        scalar = parse_string
    if element is None:
        return scalar
    length = f.dim if f.kind == "vector" else None
    return lambda arr: parse_list(arr, scalar, schema.feast_arrow_type(element), length)


def input_columns(kind: str, spec: FeatureSpec) -> tuple[Column, ...]:
    """The accepted columns of a users / items / events file under the feature spec."""
    if kind == "events":
        return (
            Column("event_id", _ID),
            Column("request_id", _ID),
            Column("user_id", _id_parser(spec.user.id_type), required=True),
            Column("item_id", _id_parser(spec.item.id_type), required=True),
            Column("event_type", _EVENT_TYPE, required=True),
            Column("position", _int(-1, INT32_MAX), default=-1),
            Column("event_timestamp", parse_timestamp, required=True),
        )
    tower = spec.user if kind == "users" else spec.item
    (view,) = tower.views()
    return (
        Column(tower.join_key, _id_parser(tower.id_type), required=True),
        *(Column(f.name, feature_parser(f)) for f in tower.features),
        Column(tower.source(view).timestamp_field, parse_timestamp),
    )


@dataclass
class Issue:
    """A problem with one column of one file; ``rows`` are 0-based data-row indices."""

    column: str
    message: str
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    values: list = field(default_factory=list)  # offending values, aligned with rows[:len]


@dataclass
class Mapped:
    """A user table mapped onto the store schema (``table`` is None when there are issues)."""

    table: pa.Table | None
    issues: list[Issue]
    ignored_columns: list[str]
    generated_event_ids: int = 0


def _issue(raw: pa.Table, column: str, message: str, mask: np.ndarray, sample: int) -> Issue:
    rows = np.flatnonzero(mask)
    shown = raw.column(column).take(pa.array(rows[:sample])).to_pylist()
    return Issue(column, message, rows, shown)


def map_table(
    kind: str, raw: pa.Table, features: FeatureSpec, sample: int = 5, history_start_us: int | None = None
) -> Mapped:
    """Parse, check and default every accepted column of ``raw`` (a users/items/events file).

    ``history_start_us`` (midnight UTC of the earliest event day, incoming or stored; None if
    there are no events at all) is the validity start of users/items rows that carry none.
    """
    spec = input_columns(kind, features)
    names = raw.column_names
    issues: list[Issue] = []
    for name in sorted({n for n in names if names.count(n) > 1}):
        issues.append(Issue(name, f"appears {names.count(name)} times in the header"))
    if issues:
        return Mapped(None, issues, [])
    for col in spec:
        if col.required and col.name not in names:
            issues.append(Issue(col.name, f"missing required column (the file has: {', '.join(names) or 'no columns'})"))
    known = {c.name for c in spec}
    ignored = [n for n in names if n not in known]

    parsed: dict[str, Parsed] = {}
    for col in spec:
        if col.name not in names:
            continue
        p = col.parse(raw.column(col.name).combine_chunks())
        for reason, mask in p.bad:
            if mask.any():
                issues.append(_issue(raw, col.name, reason, mask, sample))
        if col.required and p.null.any():
            issues.append(_issue(raw, col.name, "empty/null value in a required column", p.null, sample))
        parsed[col.name] = p
    if issues:
        return Mapped(None, issues, ignored)
    n = raw.num_rows
    values: dict[str, np.ndarray | pa.Array | None] = {}
    nulls: dict[str, np.ndarray] = {}
    for col in spec:
        got = parsed.get(col.name)
        if got is None:
            values[col.name], nulls[col.name] = None, np.ones(n, bool)
        elif col.default is not None and isinstance(got.values, np.ndarray):
            values[col.name] = np.where(got.null, np.asarray(col.default), got.values)
            nulls[col.name] = np.zeros(n, bool)
        else:
            values[col.name], nulls[col.name] = got.values, got.null
    for col in spec:  # columns absent from the file take their constant default
        if values[col.name] is None and col.default is not None:
            if col.default == ():
                values[col.name] = pa.ListArray.from_arrays(
                    pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.int32())
                )
            else:
                values[col.name] = np.full(n, col.default)
            nulls[col.name] = np.zeros(n, bool)
    if kind == "events":
        return _finish_events(values, nulls, ignored, history_start_us, features)
    return _finish_tower(features.user if kind == "users" else features.item, values, nulls, ignored, history_start_us)


def _either(primary: np.ndarray | None, null: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return fallback if primary is None else np.where(null, fallback, primary)


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(us, np.int64)).cast(schema.TS)


def _undatable(column: str, fix: str, rows: np.ndarray, ignored: list[str]) -> Mapped:
    return Mapped(None, [Issue(
        column,
        f"empty, and there are no events (in this ingest or the store) to date the row from; "
        f"give {fix}, or ingest the events together with this file",
        rows,
    )], ignored)


def _column(values, null: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """Parsed values as a typed arrow column, null where the cell was missing."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values.cast(arrow_type) if values.type != arrow_type else values
        return pc.if_else(pa.array(null), pa.scalar(None, arrow_type), arr) if null.any() else arr
    return pa.array(np.asarray(values), mask=null).cast(arrow_type)


def _finish_tower(tower: Tower, v: dict, nulls: dict, ignored: list[str], history_start_us: int | None) -> Mapped:
    target = schema.tower_table(tower)
    key, ts_field = tower.join_key, target.names[-1]
    n = len(nulls[key])
    undated = nulls[ts_field]
    if undated.any() and history_start_us is None:
        return _undatable(ts_field, ts_field, np.flatnonzero(undated), ignored)
    # The timestamp: given > the start of the event history (every event's join finds the row).
    ts_us = _either(v[ts_field], nulls[ts_field], np.full(n, history_start_us or 0, np.int64)).astype(np.int64)
    columns = {key: _column(v[key], nulls[key], target.field(key).type)}
    for f in tower.features:
        arrow_type = target.field(f.name).type
        columns[f.name] = pa.nulls(n, arrow_type) if v[f.name] is None else _column(v[f.name], nulls[f.name], arrow_type)
    columns[ts_field] = _ts(ts_us)
    return Mapped(pa.table(columns, schema=target), [], ignored)


def _keys(values) -> np.ndarray:
    """An ID column as int64 for hashing: integers as they are, strings by their key."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return hash_strings(values.to_pylist())
    return np.asarray(values, np.int64)


def _finish_events(v: dict, nulls: dict, ignored: list[str], history_start_us: int | None, spec: FeatureSpec) -> Mapped:
    n = len(nulls["user_id"])
    missing = nulls["event_id"]
    type_code = pc.index_in(v["event_type"], value_set=pa.array(schema.EVENT_TYPES)).to_numpy()
    given_request = _either(v["request_id"], nulls["request_id"], np.full(n, -1, np.int64))
    generated = content_event_ids(
        [_keys(v["user_id"]), _keys(v["item_id"]), type_code, v["event_timestamp"], v["position"], given_request]
    )
    event_id = _either(v["event_id"], missing, generated).astype(np.int64)
    request_id = _either(v["request_id"], nulls["request_id"], event_id)
    table = pa.table(
        {
            "event_id": pa.array(event_id, pa.int64()),
            "request_id": pa.array(np.asarray(request_id, np.int64)),
            "user_id": _column(v["user_id"], np.zeros(n, bool), schema.id_arrow_type(spec.user.id_type)),
            "item_id": _column(v["item_id"], np.zeros(n, bool), schema.id_arrow_type(spec.item.id_type)),
            "event_type": v["event_type"],
            "position": pa.array(np.asarray(v["position"], np.int32)),
            "event_timestamp": _ts(v["event_timestamp"]),
        },
        schema=schema.events(spec.user.id_type, spec.item.id_type),
    )
    return Mapped(table, [], ignored, int(missing.sum()))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed, well-spread 64-bit hash (numpy wraps on overflow)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def content_event_ids(columns: list[np.ndarray]) -> np.ndarray:
    """Positive int64 IDs from event content; identical rows get 0, 1, 2... mixed in so that
    repeated events (two impressions in the same microsecond) stay distinct."""
    h = np.zeros(len(columns[0]), np.uint64)
    for col in columns:
        h = _mix(h ^ np.asarray(col).astype(np.int64).view(np.uint64))
    order = np.argsort(h, kind="stable")
    hs = h[order]
    starts = np.r_[True, hs[1:] != hs[:-1]] if len(hs) else np.zeros(0, bool)
    run_start = np.maximum.accumulate(np.where(starts, np.arange(len(hs)), 0))
    occurrence = np.empty(len(hs), np.uint64)
    occurrence[order] = (np.arange(len(hs)) - run_start).astype(np.uint64)
    ids = _mix(h ^ _mix(occurrence)) & np.uint64(INT64_MAX)
    return ids.astype(np.int64)


def duplicate_rows(keys: np.ndarray) -> np.ndarray:
    """0-based rows whose key occurs more than once, in file order."""
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    eq = ks[1:] == ks[:-1]
    dup = np.zeros(len(ks), bool)
    dup[1:] |= eq
    dup[:-1] |= eq
    return np.sort(order[dup])
