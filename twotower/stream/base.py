"""The event stream contract: append events, read them back in order after a position, commit.

A *position* is an opaque string naming a point between two entries: "everything up to here".
``beginning`` is the position before the first entry; ``read(after)`` returns the entries after
a position and the position after the last one returned; a consumer group's *committed*
position says what that group has fully processed. The file log's positions are entry counts
("0", "1234"); Redis Streams' are entry IDs ("0-0", "1795958986592-3"). Callers never parse
them: they only hand back what the stream gave them.

Every entry is one event (the offline ``EVENTS`` columns) plus ``appended_at``, the wall-clock
time the stream accepted it (what freshness is measured from when the event time is old, e.g.
a replayed day).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from twotower.core import schema
from twotower.core.errors import DataError

APPENDED_AT = "appended_at"
COLUMNS = (*schema.EVENTS.names, APPENDED_AT)
SCHEMA = schema.EVENTS.append(pa.field(APPENDED_AT, schema.TS))


@dataclass
class StreamBatch:
    """Entries after ``start`` in stream order; ``end`` is the position after the last one."""

    events: pd.DataFrame  # COLUMNS
    start: str
    end: str
    positions: np.ndarray  # object [n]: the position after each entry (positions[-1] == end)

    def __len__(self) -> int:
        return len(self.events)

    def position_before(self, i: int) -> str:
        return self.start if i == 0 else str(self.positions[i - 1])


def empty_events() -> pd.DataFrame:
    return SCHEMA.empty_table().to_pandas()


def id_type_of(values: pd.Series) -> str:
    """"string" for a column of string IDs, else "int" (the entity types the IDs; the stream keeps them)."""
    return "string" if values.dtype == object or pd.api.types.is_string_dtype(values.dtype) else "int"


def to_events_table(events: pd.DataFrame, where: str = "events") -> pa.Table:
    """Check an events frame against ``schema.EVENTS`` (user and item IDs int64 or strings, as
    given); the error names the column at fault."""
    missing = [c for c in schema.EVENTS.names if c not in events.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}")
    bad = ~events["event_type"].isin(schema.EVENT_TYPES)
    if bad.any():
        raise DataError(
            f"{where}: column 'event_type' has {sorted(set(events.loc[bad, 'event_type'].astype(str)))[:5]}, "
            f"expected one of {list(schema.EVENT_TYPES)}"
        )
    columns = {}
    target = schema.events(id_type_of(events["user_id"]), id_type_of(events["item_id"]))
    for field in target:
        try:
            if field.name == "event_timestamp":
                ts = pd.to_datetime(events[field.name], utc=True).dt.as_unit("us")
                columns[field.name] = pa.array(ts, field.type)
            else:
                columns[field.name] = pa.array(events[field.name].to_numpy(), field.type)
        except (ValueError, TypeError, pa.ArrowException) as exc:
            raise DataError(f"{where}: column {field.name!r} is not {field.type} ({exc})") from None
        if columns[field.name].null_count:
            raise DataError(f"{where}: column {field.name!r} has missing values")
    return pa.table(columns, schema=target)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


class EventStream(ABC):
    """One stream, any number of consumer groups (each with its own committed position)."""

    kind: str
    beginning: str

    @abstractmethod
    def append(self, events: pd.DataFrame) -> str:
        """Append events in the given order, all or nothing; returns the new end position."""

    @abstractmethod
    def read(self, after: str, max_events: int) -> StreamBatch:
        """Up to ``max_events`` entries after ``after`` (empty batch at the end)."""

    @abstractmethod
    def read_before(self, position: str, count: int) -> pd.DataFrame:
        """The (up to) ``count`` entries just before ``position``, in stream order: the last
        ``count`` of everything a consumer at ``position`` has read (what ``read`` returns after it
        does not overlap them)."""

    @abstractmethod
    def end(self) -> str:
        """The position after the last entry."""

    @abstractmethod
    def committed(self, group: str) -> str | None:
        """The group's committed position (None: the group has never committed)."""

    @abstractmethod
    def commit(self, group: str, position: str) -> None:
        """Record atomically that ``group`` has processed everything up to ``position``."""

    def lag(self, position: str) -> int | None:
        """Entries after ``position`` (None where the stream cannot count cheaply)."""
        return None

    def close(self) -> None:
        pass

    def scan(self, after: str, chunk: int = 100_000) -> Iterator[StreamBatch]:
        """Every entry after ``after``, chunk by chunk, up to the end seen while scanning."""
        while True:
            batch = self.read(after, chunk)
            if not len(batch):
                return
            yield batch
            after = batch.end
