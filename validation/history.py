"""What earlier days looked like: the reference for day-over-day bands and never-seen IDs.

A day's *profile* is small (row count, clicks, impressions, distinct user and item IDs) and is
cached per day under ``gx/uncommitted/day_profiles`` keyed by the partition's files (name,
size, mtime), so validating day N reads day N's events once, not days 1..N every time.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from twotower.core.errors import DataError
from twotower.core.files import atomic_write_bytes
from twotower.core.encode import hash_strings
from twotower.core.workspace import Workspace
from validation.load import day_parts, read_table


@dataclass
class DayProfile:
    day: date
    rows: int
    clicks: int
    impressions: int
    user_ids: np.ndarray  # distinct, sorted int64 ID keys (twotower.core.encode.id_keys)
    item_ids: np.ndarray
    notes: list[str] = field(default_factory=list)  # what could not be profiled, and why

    @property
    def click_rate(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None


def _distinct_ids(data: pa.Table, column: str, notes: list[str]) -> np.ndarray:
    if column not in data.column_names:
        notes.append(f"events.{column} is missing")
        return np.empty(0, np.int64)
    col = data[column]
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):  # string IDs: their keys
        values = pc.unique(col).drop_null().to_pylist()
        return np.unique(hash_strings(values))
    try:
        values = pc.unique(col.cast(pa.int64())).drop_null()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        notes.append(f"events.{column} is {col.type}, not integer or string")
        return np.empty(0, np.int64)
    return np.sort(values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False))


def _count(data: pa.Table, event_type: str) -> int:
    if "event_type" not in data.column_names or not pa.types.is_string(data["event_type"].type):
        return 0
    return int(pc.sum(pc.equal(data["event_type"], event_type)).as_py() or 0)


def profile_of(day: date, data: pa.Table) -> DayProfile:
    """Profile of one day's events (pure)."""
    notes: list[str] = []
    if "event_type" not in data.column_names or not pa.types.is_string(data["event_type"].type):
        notes.append("events lack a string column event_type: clicks and impressions unknown")
    return DayProfile(
        day=day,
        rows=data.num_rows,
        clicks=_count(data, "click"),
        impressions=_count(data, "impression"),
        user_ids=_distinct_ids(data, "user_id", notes),
        item_ids=_distinct_ids(data, "item_id", notes),
        notes=notes,
    )


def _cache_path(ws: Workspace, day: date) -> Path:
    return ws.gx_dir / "uncommitted" / "day_profiles" / f"{day.isoformat()}.npz"


def _files_key(parts: list[Path]) -> str:
    return json.dumps([[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in parts])


def save_profile(ws: Workspace, profile: DayProfile, parts: list[Path]) -> None:
    buf = io.BytesIO()
    meta = {
        "key": _files_key(parts),
        "rows": profile.rows,
        "clicks": profile.clicks,
        "impressions": profile.impressions,
        "notes": profile.notes,
    }
    np.savez(buf, meta=np.array(json.dumps(meta)), users=profile.user_ids, items=profile.item_ids)
    atomic_write_bytes(_cache_path(ws, profile.day), buf.getvalue())


def load_profile(ws: Workspace, day: date) -> DayProfile:
    """A day's profile, from the cache when the partition has not changed since."""
    parts = day_parts(ws, day)
    path = _cache_path(ws, day)
    if path.is_file():
        try:
            with np.load(path) as npz:
                meta = json.loads(str(npz["meta"]))
                if meta["key"] == _files_key(parts):
                    return DayProfile(
                        day, meta["rows"], meta["clicks"], meta["impressions"],
                        npz["users"], npz["items"], meta["notes"],
                    )
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    profile = profile_of(day, read_table("events", parts).data)
    save_profile(ws, profile, parts)
    return profile


def summary_path(ws: Workspace, day: date) -> Path:
    """Where the gate writes a day's machine-readable verdict."""
    return ws.gx_dir / "summaries" / f"{day.isoformat()}.json"


def failed_gate(ws: Workspace, day: date) -> bool:
    """True when the day's last gate run (its summary) failed."""
    path = summary_path(ws, day)
    try:
        return json.loads(path.read_text()).get("success") is False
    except (OSError, ValueError):
        return False


@dataclass
class History:
    """Earlier days as seen from ``day``: the reference day for the day-over-day bands (the
    nearest earlier day that has not failed the gate: a truncated day must not become the
    yardstick of the next one), and every ID seen on any earlier day."""

    previous: DayProfile | None
    seen_users: np.ndarray
    seen_items: np.ndarray
    notes: list[str]


def history_before(ws: Workspace, day: date) -> History:
    earlier = [d for d in ws.days() if d < day]
    users, items, notes = [], [], []
    previous = None
    for d in earlier:
        try:
            profile = load_profile(ws, d)
        except DataError as exc:  # an unreadable earlier day cannot be a reference
            notes.append(f"earlier day {d} skipped: {exc}")
            continue
        notes.extend(f"earlier day {d}: {n}" for n in profile.notes)
        users.append(profile.user_ids)
        items.append(profile.item_ids)
        if failed_gate(ws, d):
            notes.append(f"earlier day {d} failed the gate: not used as the reference day")
        else:
            previous = profile
    cat = lambda arrays: np.unique(np.concatenate(arrays)) if arrays else np.empty(0, np.int64)  # noqa: E731
    return History(previous, cat(users), cat(items), notes)
