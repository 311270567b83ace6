"""Derived frames: checks GX cannot express on one table, turned into columns GX can judge.

Each function is pure (arrow tables in, a pandas frame out). The frames carry no verdicts, only
facts (an unknown ID, a share, a rate); the GX suites in ``validation.suites`` decide whether
the facts are acceptable, so every check appears in the GX results and the data docs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from twotower.core import schema
from twotower.core.encode import hash_strings
from twotower.core.features import FeatureSpec
from validation.history import DayProfile, History
from validation.load import MISSING, Layout, Table, type_name

UTC_US = pa.timestamp("us", tz="UTC")

LINK_COLUMNS = [
    "unknown_user_id",  # user_id of an event whose user is in no table of the user tower
    "unknown_item_id",  # item_id of an event whose item is in no table of the item tower
    "user_id_before_profile",  # user_id of an event older than the user's first row
    "item_id_before_creation",  # item_id of an event older than the item's first row
]


def qualified(table: str, column: str) -> str:
    return f"{table}.{column}"


def expected_types(spec: FeatureSpec, layout: Layout | None = None) -> dict[str, list[str]]:
    """Column -> the arrow type names it may be stored as: the events table, or a tower table
    (join key, timestamp, declared fields as their Feast dtypes are stored)."""
    if layout is None:
        events = schema.events(spec.user.id_type, spec.item.id_type)
        return {f.name: _accepted(f.type) for f in events}
    out = {layout.key: _accepted(schema.id_arrow_type(layout.id_type))}
    out[layout.timestamp] = [f"timestamp[{u}, tz=UTC]" for u in ("us", "ns", "ms", "s")]
    out.update({f.name: _accepted(schema.feast_arrow_type(f.dtype)) for f in layout.features})
    return out


def _accepted(t: pa.DataType) -> list[str]:
    names = [type_name(t)]
    if t == pa.string():
        names.append("large_string")
    if pa.types.is_list(t):
        names.append(f"large_list<{type_name(t.value_type)}>")
    return names


def schema_frame(tables: list[tuple[Table, dict[str, list[str]]]]) -> pd.DataFrame:
    """One row; a column per ``table.column`` found in the files (in file order) or expected by
    the spec (value ``<missing>``); the value is the arrow type as stored."""
    row: dict[str, str] = {}
    for table, expected in tables:
        for column, arrow_type in table.types.items():
            row[qualified(table.name, column)] = arrow_type
        for column in expected:
            row.setdefault(qualified(table.name, column), MISSING)
    return pd.DataFrame([row], dtype=object)


class Ints:
    """An int64 column without the float detour (IDs may be 64-bit hashes): values + validity."""

    def __init__(self, values: np.ndarray, valid: np.ndarray):
        self.values, self.valid = values, valid


def gx_view(table: pa.Table) -> pa.Table:
    """The table as GX's pandas engine reads it fast, same columns, same nulls, same values:
    list columns become their lengths (pandas cannot hash arrays, so GX would pickle the whole
    frame to fingerprint it) and narrow ints are widened to int64 (GX's range check runs
    vectorised only on int64/float64, element by element in Python otherwise). Types are
    judged on the stored arrow schema (``schema_frame``), not on this view."""
    columns = []
    for col in table.columns:
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            col = pc.list_value_length(col).cast(pa.int64())
        elif pa.types.is_integer(col.type) and col.type != pa.int64():
            try:
                col = col.cast(pa.int64())
            except pa.ArrowInvalid:  # uint64 beyond int64: keep as stored
                pass
        columns.append(col)
    return pa.table(columns, names=table.column_names)


def _as_int64(table: pa.Table, column: str, notes: list[str], what: str) -> Ints | None:
    """Column as int64 (timestamps as UTC microseconds); None (and a note) if unusable."""
    if column not in table.column_names:
        notes.append(f"{what}.{column} is missing")
        return None
    col = table[column]
    try:
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us", tz=col.type.tz or "UTC")).cast(UTC_US).cast(pa.int64())
        else:
            col = col.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        notes.append(f"{what}.{column} is {table[column].type}, not usable as int64/timestamp")
        return None
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    return Ints(col.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False), valid)


def _ids(table: pa.Table, column: str, id_type: str, notes: list[str], what: str) -> tuple[Ints, np.ndarray] | None:
    """(ID keys, the IDs as stored) of a column; None (and a note) if unusable."""
    if column not in table.column_names:
        notes.append(f"{what}.{column} is missing")
        return None
    col = table[column]
    if id_type == "int":
        keys = _as_int64(table, column, notes, what)
        return None if keys is None else (keys, keys.values)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        notes.append(f"{what}.{column} is {col.type}, not the string its entity declares")
        return None
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    values = np.asarray(col.fill_null("").to_pylist(), dtype=object)
    return Ints(hash_strings(values), valid), values


def _first_valid(tables: list[tuple[Layout, Table]], notes: list[str]) -> pd.Series | None:
    """Earliest timestamp (us) of each ID key over a tower's tables: when its first row became
    valid. A null timestamp counts as 'valid forever' (the not-null expectations report it)."""
    frames = []
    for layout, table in tables:
        ids = _ids(table.data, layout.key, layout.id_type, notes, table.name)
        ts = _as_int64(table.data, layout.timestamp, notes, table.name)
        if ids is None or ts is None:
            return None
        keys = ids[0]
        stamps = np.where(ts.valid, ts.values, np.iinfo(np.int64).min)
        frames.append(pd.DataFrame({"id": keys.values[keys.valid], "ts": stamps[keys.valid]}))
    frame = pd.concat(frames, ignore_index=True)
    return frame.groupby("id")["ts"].min()


def _link(ids: tuple[Ints, np.ndarray], ts: Ints, first: pd.Series | None) -> tuple[pd.array, pd.array]:
    """(unknown id or NA, id-used-before-valid or NA) per event, as the events store the ID.
    ``first`` None: the tower has no table to check against (an ID-only tower), every ID is known."""
    keys, shown = ids
    if shown.dtype == object:
        as_ids = lambda mask: pd.array(np.where(mask, shown, None), dtype="string")  # noqa: E731
    else:
        as_ids = lambda mask: pd.arrays.IntegerArray(shown.astype(np.int64).copy(), ~mask)  # noqa: E731
    if first is None:
        nothing = np.zeros(len(keys.values), bool)
        return as_ids(nothing), as_ids(nothing)
    pos = np.full(len(keys.values), -1, np.int64)
    pos[keys.valid] = pd.Index(first.index).get_indexer(keys.values[keys.valid])
    known = pos >= 0
    unknown = keys.valid & ~known
    valid_from = first.to_numpy()[np.maximum(pos, 0)] if len(first) else np.zeros(len(pos), np.int64)
    early = known & ts.valid & (ts.values < valid_from)
    return as_ids(unknown), as_ids(early)


def event_links(events: Table, towers: list[tuple[Layout, Table]], spec: FeatureSpec) -> tuple[pd.DataFrame, list[str]]:
    """Per event: is its user/item known to its tower's tables, and was it valid at the event's time?"""
    notes: list[str] = []
    ev_users = _ids(events.data, "user_id", spec.user.id_type, notes, "events")
    ev_items = _ids(events.data, "item_id", spec.item.id_type, notes, "events")
    ev_ts = _as_int64(events.data, "event_timestamp", notes, "events")
    firsts, unreadable = {}, False
    for side in ("user", "item"):
        tables = [t for t in towers if t[0].side == side]
        if not tables:
            notes.append(f"events.{side}_id not checked against {side} tables: the {side} tower declares no profile view")
        firsts[side] = _first_valid(tables, notes) if tables else None
        unreadable |= bool(tables) and firsts[side] is None  # noted by _first_valid
    if unreadable or any(x is None for x in (ev_users, ev_items, ev_ts)):
        notes.insert(0, "cross-table checks (event_links) not computed")
        return pd.DataFrame({c: pd.array([], dtype="Int64") for c in LINK_COLUMNS}), notes
    unknown_user, early_user = _link(ev_users, ev_ts, firsts["user"])
    unknown_item, early_item = _link(ev_items, ev_ts, firsts["item"])
    frame = pd.DataFrame(dict(zip(LINK_COLUMNS, (unknown_user, unknown_item, early_user, early_item))))
    return frame, notes


def day_stats(today: DayProfile, history: History) -> tuple[pd.DataFrame, dict]:
    """One row of day-level facts: click rate and the shares of never-seen IDs."""
    new_users = np.setdiff1d(today.user_ids, history.seen_users, assume_unique=True)
    new_items = np.setdiff1d(today.item_ids, history.seen_items, assume_unique=True)
    share = lambda new, active: len(new) / len(active) if len(active) else 0.0  # noqa: E731
    rate = today.click_rate
    stats = {
        "click_rate": float("nan") if rate is None else rate,
        "new_user_share": share(new_users, today.user_ids),
        "new_item_share": share(new_items, today.item_ids),
    }
    facts = {
        "events": today.rows,
        "clicks": today.clicks,
        "impressions": today.impressions,
        "active_users": int(len(today.user_ids)),
        "new_users": int(len(new_users)),
        "active_items": int(len(today.item_ids)),
        "new_items": int(len(new_items)),
        "reference_day": history.previous.day.isoformat() if history.previous else None,
    }
    return pd.DataFrame([stats]), facts
