"""The offline store as ingest sees it: what is already there, and how new tables are laid out.

Reads only what the checks need (ID columns, ``day=`` directory names) and builds the exact
bytes to write: users/items sorted by ID, events split by UTC day and ordered by
(event_timestamp, event_id), so the same input always gives the same files (idempotent).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twotower.ingest.columns import US_PER_DAY
from twotower.core.workspace import Workspace


def read_store(path: Path, table_schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """The stored table in ``table_schema``'s layout: a column the file lacks (a field declared
    after it was written) is all null, a column the schema does not name is left out."""
    names = columns or table_schema.names
    if not path.is_file():
        return table_schema.empty_table().select(names)
    have = set(pq.read_schema(path).names)
    table = pq.read_table(path, columns=[n for n in names if n in have])
    for name in names:
        if name not in have:
            table = table.append_column(table_schema.field(name), pa.nulls(table.num_rows, table_schema.field(name).type))
    return table.select(names)


def day_of(us: np.ndarray) -> np.ndarray:
    return (np.asarray(us) // US_PER_DAY).astype(np.int64)


def date_of(day: int) -> date:
    return date(1970, 1, 1) + timedelta(days=int(day))


def history_start_us(ws: Workspace, events: pa.Table | None) -> int | None:
    """Midnight UTC (microseconds) of the earliest event day, incoming or stored; None if none.

    A ``day=`` directory name is enough for the stored side: no event data is read.
    """
    days = [(d - date(1970, 1, 1)).days for d in ws.days()]
    if events is not None and events.num_rows:
        days.append(int(day_of(events.column("event_timestamp").cast(pa.int64()).to_numpy()).min()))
    return min(days) * US_PER_DAY if days else None


def store_event_ids(ws: Workspace, skip_days: set[date]) -> tuple[np.ndarray, np.ndarray]:
    """event_id of every stored event outside ``skip_days`` (those will be replaced), and its day."""
    ids, days = [], []
    for day in ws.days():
        if day in skip_days:
            continue
        for part in sorted(ws.events_day_dir(day).glob("*.parquet")):
            col = pq.read_table(part, columns=["event_id"]).column("event_id").to_numpy()
            ids.append(col)
            days.append(np.full(len(col), (day - date(1970, 1, 1)).days))
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ids), np.concatenate(days)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def upsert(stored: pa.Table, incoming: pa.Table, key: str) -> tuple[pa.Table, int]:
    """Stored rows whose key is not incoming, plus the incoming rows, sorted by key."""
    keep = ~np.isin(stored.column(key).to_numpy(zero_copy_only=False), incoming.column(key).to_numpy(zero_copy_only=False))
    merged = pa.concat_tables([stored.filter(pa.array(keep)), incoming])
    order = np.argsort(merged.column(key).to_numpy(zero_copy_only=False), kind="stable")
    return merged.take(pa.array(order)), int((~keep).sum())


def event_days(table: pa.Table, rows_per_file: int) -> Iterator[tuple[date, dict[str, bytes]]]:
    """Events split by UTC day, each day ordered by (event_timestamp, event_id)."""
    if table.num_rows == 0:
        return
    ts = table.column("event_timestamp").cast(pa.int64()).to_numpy()
    order = np.lexsort((table.column("event_id").to_numpy(), ts))
    table = table.take(pa.array(order))
    days = day_of(ts[order])
    bounds = np.flatnonzero(np.r_[True, days[1:] != days[:-1], True])
    for start, stop in zip(bounds[:-1], bounds[1:]):
        parts = {
            f"part-{i:05d}.parquet": parquet_bytes(table.slice(lo, min(rows_per_file, stop - lo)))
            for i, lo in enumerate(range(start, stop, rows_per_file))
        }
        yield date_of(days[start]), parts
