"""Reading what the gate judges: one day of events plus the towers' tables (feature view sources).

Only *unreadable* input is an error here (a missing partition, a file that is not parquet):
everything that is readable but wrong (a renamed column, a wrong type, nulls) is loaded as it
is and left for GX to judge, so that it shows up as a failed expectation in the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from twotower.core.errors import DataError
from twotower.core.features import FeatureSpec
from twotower.core.workspace import Workspace


MISSING = "<missing>"


def type_name(t: pa.DataType) -> str:
    """Arrow type as text, ignoring list item field names (parquet writers rename them)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        prefix = "large_list" if pa.types.is_large_list(t) else "list"
        return f"{prefix}<{type_name(t.value_type)}>"
    return str(t)


@dataclass
class Table:
    """A table as stored: its data and, per column, the arrow type(s) found in its files."""

    name: str
    data: pa.Table
    types: dict[str, str]  # column -> arrow type; "a | b" (or "a | <missing>") if files disagree
    files: list[Path]


def day_parts(ws: Workspace, day: date) -> list[Path]:
    """The parquet parts of one day's partition (an error naming the directory if none)."""
    folder = ws.events_day_dir(day)
    if not folder.is_dir():
        known = ", ".join(d.isoformat() for d in ws.days()) or "none"
        raise DataError(f"no events for day {day}: {folder} does not exist (days in store: {known})")
    parts = sorted(p for p in folder.glob("part-*.parquet") if p.is_file())
    if not parts:
        raise DataError(f"no events for day {day}: {folder} holds no part-*.parquet file")
    return parts


def read_table(name: str, files: list[Path], columns: list[str] | None = None) -> Table:
    """Read and concatenate parquet files; files that disagree on columns are kept apart
    column-wise (missing values become null) so GX sees the union, not an exception."""
    tables: list[pa.Table] = []
    types: dict[str, list[str]] = {}
    for path in files:
        if not path.is_file():
            raise DataError(f"{name}: {path} does not exist")
        try:
            table = pq.read_table(path, columns=columns)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{name}: cannot read {path} as parquet: {exc}") from None
        for field in table.schema:
            seen = types.setdefault(field.name, [])
            if type_name(field.type) not in seen:
                seen.append(type_name(field.type))
        tables.append(table.replace_schema_metadata(None))
    try:
        data = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Type conflicts between parts: keep every column, as strings where the parts disagree.
        conflicting = sorted(c for c, t in types.items() if len(t) > 1)
        try:
            data = _concat_as_strings(tables, set(conflicting))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise DataError(
                f"{name}: the files {', '.join(str(f) for f in files)} disagree on the type of "
                f"column(s) {', '.join(conflicting)}: {exc}"
            ) from None
    for column, seen in types.items():  # a column some files lack is not a sound column
        if any(column not in t.column_names for t in tables):
            seen.append(MISSING)
    return Table(name, data, {c: " | ".join(t) for c, t in types.items()}, list(files))


def _concat_as_strings(tables: list[pa.Table], conflicting: set[str]) -> pa.Table:
    fixed = []
    for table in tables:
        for column in conflicting & set(table.column_names):
            i = table.column_names.index(column)
            table = table.set_column(i, column, table[column].cast(pa.string()))
        fixed.append(table)
    return pa.concat_tables(fixed, promote_options="permissive")


@dataclass(frozen=True)
class Layout:
    """One table the gate reads: its asset name and the columns the feature spec declares."""

    name: str  # "events", or a tower view's asset: "users" / "items" (one view), "users_<view>"
    key: str | None = None  # the entity's join key (tower tables)
    id_type: str = "int"
    timestamp: str = "event_timestamp"
    features: tuple = ()  # twotower.core.features.Feature of the view
    source: str | None = None  # parquet file or directory (tower tables)
    side: str = ""


def layouts(spec: FeatureSpec) -> list[Layout]:
    """The tower tables of the spec, one per feature view, named by their tower."""
    out = []
    for tower, plural in ((spec.user, "users"), (spec.item, "items")):
        views = tower.data_views()  # not the views the platform writes itself
        for view in views:
            source = tower.source(view)
            name = plural if len(views) == 1 else f"{plural}_{view}"
            out.append(Layout(name, tower.join_key, tower.id_type, source.timestamp_field,
                              tuple(f for f in tower.features if f.view == view), source.path, tower.side))  # fmt: skip
    return out


def source_files(layout: Layout) -> list[Path]:
    path = Path(layout.source)
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise DataError(f"{layout.name}: {path} holds no parquet file")
        return files
    return [path]


def read_day(ws: Workspace, day: date, spec: FeatureSpec) -> tuple[Table, list[tuple[Layout, Table]]]:
    """(events of the day, every tower table as stored)."""
    events = read_table("events", day_parts(ws, day))
    return events, [(layout, read_table(layout.name, source_files(layout))) for layout in layouts(spec)]
