"""Map one user table (users, items or events) onto the offline store schema.

Pure: a raw ``pa.Table`` in, a table in the exact ``twotower.core.schema`` layout plus the list of
problems out. The input contract (which columns, which types, which defaults) is declared once
in ``INPUT`` below and documented in docs/data-schema.md.

Defaults are chosen so that nothing needs guessing later:
- profile/item features default to the "unknown" value 0 and empty tag lists;
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
from twotower.ingest.columns import (
    INT32_MAX,
    INT64_MAX,
    US_PER_DAY,
    Parsed,
    parse_choice,
    parse_date,
    parse_int,
    parse_tags,
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

INPUT: dict[str, tuple[Column, ...]] = {
    "users": (
        Column("user_id", _ID, required=True),
        Column("age_bucket", _int(0, 6), default=0),
        Column("gender", _int(0, 2), default=0),
        Column("city_tier", _int(0, 4), default=0),
        Column("interest_tags", parse_tags, default=()),
        Column("signup_date", parse_date),
        Column("event_timestamp", parse_timestamp),
    ),
    "items": (
        Column("item_id", _ID, required=True),
        Column("category", _int(0, INT32_MAX), default=0),
        Column("tags", parse_tags, default=()),
        Column("author_id", _int(0, INT64_MAX), default=0),
        Column("created_at", parse_timestamp),
        # Alias for created_at, used only when created_at is absent (the store's items
        # event_timestamp always equals created_at).
        Column("event_timestamp", parse_timestamp),
    ),
    "events": (
        Column("event_id", _ID),
        Column("request_id", _ID),
        Column("user_id", _ID, required=True),
        Column("item_id", _ID, required=True),
        Column("event_type", _EVENT_TYPE, required=True),
        Column("position", _int(-1, INT32_MAX), default=-1),
        Column("event_timestamp", parse_timestamp, required=True),
    ),
}


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


def map_table(kind: str, raw: pa.Table, sample: int = 5, history_start_us: int | None = None) -> Mapped:
    """Parse, check and default every accepted column of ``raw`` (a users/items/events file).

    ``history_start_us`` (midnight UTC of the earliest event day, incoming or stored; None if
    there are no events at all) is the validity start of users/items rows that carry none.
    """
    spec = INPUT[kind]
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
    return _FINISH[kind](values, nulls, ignored, history_start_us)


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


def _finish_users(v: dict, nulls: dict, ignored: list[str], history_start_us: int | None) -> Mapped:
    n = len(nulls["user_id"])
    signup, ts = v["signup_date"], v["event_timestamp"]
    undated = nulls["event_timestamp"] & nulls["signup_date"]
    if undated.any() and history_start_us is None:
        return _undatable("event_timestamp", "event_timestamp or signup_date", np.flatnonzero(undated), ignored)
    # event_timestamp: given > midnight UTC of signup_date > start of the event history.
    fallback = np.full(n, history_start_us or 0, np.int64)
    if signup is not None:
        fallback = np.where(nulls["signup_date"], fallback, signup.astype(np.int64) * US_PER_DAY)
    ts_us = _either(ts, nulls["event_timestamp"], fallback).astype(np.int64)
    # signup_date: given > UTC date of event_timestamp.
    days = _either(signup, nulls["signup_date"], (ts_us // US_PER_DAY).astype(np.int32))
    table = pa.table(
        {
            "user_id": pa.array(v["user_id"], pa.int64()),
            "age_bucket": pa.array(v["age_bucket"], pa.int32()),
            "gender": pa.array(v["gender"], pa.int32()),
            "city_tier": pa.array(v["city_tier"], pa.int32()),
            "interest_tags": _tags(v["interest_tags"]),
            "signup_date": pa.array(np.asarray(days, np.int32)).cast(pa.date32()),
            "event_timestamp": _ts(ts_us),
        },
        schema=schema.USERS,
    )
    return Mapped(table, [], ignored)


def _finish_items(v: dict, nulls: dict, ignored: list[str], history_start_us: int | None) -> Mapped:
    n = len(nulls["item_id"])
    undated = nulls["created_at"] & nulls["event_timestamp"]
    if undated.any() and history_start_us is None:
        return _undatable("created_at", "created_at", np.flatnonzero(undated), ignored)
    # created_at: given > event_timestamp column > start of the event history.
    fallback = np.full(n, history_start_us or 0, np.int64)
    alias = _either(v["event_timestamp"], nulls["event_timestamp"], fallback)
    created = _either(v["created_at"], nulls["created_at"], alias).astype(np.int64)
    table = pa.table(
        {
            "item_id": pa.array(v["item_id"], pa.int64()),
            "category": pa.array(v["category"], pa.int32()),
            "tags": _tags(v["tags"]),
            "author_id": pa.array(v["author_id"], pa.int64()),
            "created_at": _ts(created),
            "event_timestamp": _ts(created),
        },
        schema=schema.ITEMS,
    )
    return Mapped(table, [], ignored)


def _finish_events(v: dict, nulls: dict, ignored: list[str], history_start_us: int | None) -> Mapped:
    n = len(nulls["user_id"])
    missing = nulls["event_id"]
    type_code = pc.index_in(v["event_type"], value_set=pa.array(schema.EVENT_TYPES)).to_numpy()
    given_request = _either(v["request_id"], nulls["request_id"], np.full(n, -1, np.int64))
    generated = content_event_ids(
        [v["user_id"], v["item_id"], type_code, v["event_timestamp"], v["position"], given_request]
    )
    event_id = _either(v["event_id"], missing, generated).astype(np.int64)
    request_id = _either(v["request_id"], nulls["request_id"], event_id)
    table = pa.table(
        {
            "event_id": pa.array(event_id, pa.int64()),
            "request_id": pa.array(np.asarray(request_id, np.int64)),
            "user_id": pa.array(v["user_id"], pa.int64()),
            "item_id": pa.array(v["item_id"], pa.int64()),
            "event_type": v["event_type"],
            "position": pa.array(np.asarray(v["position"], np.int32)),
            "event_timestamp": _ts(v["event_timestamp"]),
        },
        schema=schema.EVENTS,
    )
    return Mapped(table, [], ignored, int(missing.sum()))


_FINISH = {"users": _finish_users, "items": _finish_items, "events": _finish_events}


def _tags(values: pa.Array) -> pa.Array:
    return values.cast(pa.list_(pa.int32()))


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
