"""``twotower ingest``: bring your own users, items and events into the offline store.

The contract for the input files is docs/data-schema.md. The flow is deliberately two-phase:

1. **Validate everything** (every file, every column, IDs across files and against the store)
   and collect all problems into one ``DataError`` — nothing is written if there is any.
2. **Write everything at once** through ``OfflineCommit``: new files are staged, then made
   visible together; a crash leaves the previous store (or, after the commit point, the next
   run rolls the new one forward).

Re-ingest semantics: users and items are upserted by ID (an incoming row replaces the stored
row with the same ID, other stored rows stay); each UTC day that has at least one incoming
event is replaced as a whole, other days stay. Hence running the same ingest twice leaves the
store byte-for-byte identical, and one ingest must carry *complete* days.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twotower.core.files import file_lock
from twotower.core import schema
from twotower.core.config import Settings
from twotower.core.errors import DataError, UserError
from twotower.core.features import FeatureSpec, Tower
from twotower.ingest.read import read_input
from twotower.ingest.store import (
    date_of,
    day_of,
    event_days,
    history_start_us,
    parquet_bytes,
    read_store,
    store_event_ids,
    upsert,
)
from twotower.ingest.tables import Issue, Mapped, duplicate_rows, map_table
from twotower.ingest.commit import OfflineCommit, recover
from twotower.core.workspace import Workspace

ROWS_NOTE = "rows are data rows numbered from 1, header not counted: CSV row N is on line N+1"


@dataclass(frozen=True)
class IngestSummary:
    """What an ingest did; ``lines()`` is the CLI's printout."""

    users: int = 0
    users_added: int = 0
    users_replaced: int = 0
    items: int = 0
    items_added: int = 0
    items_replaced: int = 0
    events: int = 0
    days: tuple[date, ...] = ()
    generated_event_ids: int = 0
    ignored_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        days = f"{self.days[0]}..{self.days[-1]}" if self.days else "none"
        out = [
            f"users:  {self.users} ingested ({self.users_added} new, {self.users_replaced} replaced)",
            f"items:  {self.items} ingested ({self.items_added} new, {self.items_replaced} replaced)",
            f"events: {self.events} ingested into {len(self.days)} day(s) ({days}), "
            f"{self.generated_event_ids} event_id(s) generated",
        ]
        out += [f"ignored columns of {f}: {', '.join(c)}" for f, c in self.ignored_columns.items()]
        out.append(f"took {self.seconds:.2f} s")
        return out


@dataclass
class _Input:
    path: Path
    option: str
    mapped: Mapped | None = None
    issues: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mapped is not None and self.mapped.table is not None and not self.issues

    @property
    def table(self) -> pa.Table:
        """The mapped table; only for inputs that mapped without issues."""
        assert self.mapped is not None and self.mapped.table is not None, self.path
        return self.mapped.table

    @property
    def valid(self) -> Mapped:
        assert self.mapped is not None, self.path
        return self.mapped


def _fmt_issue(path: Path, issue: Issue, limit: int) -> str:
    head = f"{path}: column '{issue.column}': {issue.message}"
    if len(issue.rows) == 0:
        return head
    rows = issue.rows[:limit].tolist()
    if issue.values:
        shown = ", ".join(f"{r + 1} ({_short(v)})" for r, v in zip(rows, issue.values[:limit]))
    else:
        shown = ", ".join(str(r + 1) for r in rows)
    more = f" and {len(issue.rows) - limit} more" if len(issue.rows) > limit else ""
    return f"{head}: {'row' if len(issue.rows) == 1 else 'rows'} {shown}{more}"


def _short(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _id_issue(table: pa.Table, column: str, message: str, rows: np.ndarray, limit: int) -> Issue:
    return Issue(column, message, rows, table.column(column).take(pa.array(rows[:limit])).to_pylist())


def tower_path(ws: Workspace, tower: Tower, option: str) -> Path:
    """The offline table ``ingest`` writes for a tower: its one view's source, in the workspace."""
    views = tower.views()
    if len(views) != 1:
        raise UserError(f"{option}: the {tower.side} tower reads {len(views)} feature views ({', '.join(views)}); "
                        f"ingest writes one table per tower - write those views' sources directly")  # fmt: skip
    path = Path(tower.source(views[0]).path)
    if ws.root.resolve() not in path.resolve().parents:
        raise UserError(f"{option}: feature view {views[0]!r} reads {path}, outside the workspace {ws.root}; "
                        f"ingest writes the workspace's offline store - update that file directly")  # fmt: skip
    return path


def _known_ids(ws: Workspace, tower: Tower) -> np.ndarray:
    """The IDs of a tower's stored rows (every view's source)."""
    out = [np.zeros(0, np.int64 if tower.id_type == "int" else object)]
    for view in tower.views():
        path = Path(tower.source(view).path)
        if path.exists():
            out.append(pq.read_table(path, columns=[tower.join_key]).column(tower.join_key).to_numpy(zero_copy_only=False))
    return np.concatenate(out)


def _check_events(ws: Workspace, spec: FeatureSpec, ev: _Input, users: _Input | None, items: _Input | None,
                  limit: int) -> None:
    """Cross-row and cross-file checks of the events: unique event_id, known users/items."""
    table = ev.table
    ids = table.column("event_id").to_numpy()
    dup = duplicate_rows(ids)
    if len(dup):
        ev.issues.append(_id_issue(table, "event_id", "duplicate event_id", dup, limit))
    in_days = {date_of(d) for d in np.unique(day_of(table.column("event_timestamp").cast(pa.int64()).to_numpy()))}
    stored, stored_day = store_event_ids(ws, in_days)
    clash = np.isin(ids, stored)
    if clash.any():
        days = sorted({date_of(d) for d in stored_day[np.isin(stored, ids[clash])]})
        where = ", ".join(str(d) for d in days[:5])
        ev.issues.append(_id_issue(
            table, "event_id",
            f"event_id already in the store on day(s) {where}, which this ingest does not replace",
            np.flatnonzero(clash), limit))
    for col, other, tower, option in (("user_id", users, spec.user, "--users"), ("item_id", items, spec.item, "--items")):
        if other is not None and not other.ok:
            continue  # its own problems are reported; its IDs are not trustworthy
        if not tower.views():
            continue  # an ID-only tower: any ID is a new one, nothing to look it up in
        known = _known_ids(ws, tower)
        if other is not None:
            known = np.concatenate([known, other.table.column(tower.join_key).to_numpy(zero_copy_only=False)])
        unknown = np.flatnonzero(~np.isin(table.column(col).to_numpy(zero_copy_only=False), known))
        if len(unknown):
            source = f"{other.path}" if other is not None else f"the input (no {option} file given)"
            ev.issues.append(_id_issue(
                table, col, f"{col} found neither in {source} nor in the offline store", unknown, limit))


def _check_keys(inp: _Input, key: str, limit: int) -> None:
    table = inp.table
    dup = duplicate_rows(table.column(key).to_numpy(zero_copy_only=False))
    if len(dup):
        inp.issues.append(_id_issue(table, key, f"duplicate {key}", dup, limit))


@contextmanager
def _exclusive(ws: Workspace) -> Iterator[None]:
    """One ingest at a time per workspace (a lock file in the offline store, once it exists:
    a first ingest that fails leaves no trace)."""
    if not ws.offline.is_dir():
        yield
        return
    with file_lock(ws.offline / ".ingest.lock"):
        yield


def ingest(settings: Settings, ws: Workspace, spec: FeatureSpec, *, events: Path | None = None,
           users: Path | None = None, items: Path | None = None) -> IngestSummary:
    """Validate the given files and, only if all are valid, write them into the offline store.

    ``spec``: the feature spec the files are read under (columns and types of the towers'
    tables, ID types of the events). Each of ``events``, ``users``, ``items`` is optional (at
    least one is needed): events may refer to users/items already in the store. Raises
    ``DataError`` listing every problem found (file, column, offending rows and values) with the
    store untouched.
    """
    started = time.perf_counter()
    if events is None and users is None and items is None:
        raise UserError("nothing to ingest: give at least one of --events, --users, --items")
    spec = spec.data_spec()  # the views the platform writes (popularity) are not the user's files
    paths = {"users": tower_path(ws, spec.user, "--users") if users is not None else None,
             "items": tower_path(ws, spec.item, "--items") if items is not None else None}  # fmt: skip
    limit = settings.ingest.max_reported_rows
    with _exclusive(ws):
        if ws.offline.is_dir():
            recover(ws.offline)  # finish (or discard) an ingest that crashed earlier
        inputs: dict[str, _Input] = {}
        errors: list[str] = []
        history_start = history_start_us(ws, None)
        # Events first: users/items rows without a validity start are dated from them.
        for kind, path, option in (("events", events, "--events"), ("users", users, "--users"),
                                   ("items", items, "--items")):
            if path is None:
                continue
            inp = inputs[kind] = _Input(Path(path), option)
            try:
                inp.mapped = map_table(kind, read_input(inp.path, option), spec, limit, history_start)
                inp.issues = list(inp.mapped.issues)
            except DataError as exc:
                errors.append(str(exc))
            if kind == "events":
                table = inp.mapped.table if inp.mapped else None
                history_start = history_start_us(ws, table)
                if table is None and history_start is None:
                    history_start = 0  # the events failed: their problems say it all
        for kind, key in (("users", spec.user.join_key), ("items", spec.item.join_key)):
            if kind in inputs and inputs[kind].ok:
                _check_keys(inputs[kind], key, limit)
        if "events" in inputs and inputs["events"].ok:
            _check_events(ws, spec, inputs["events"], inputs.get("users"), inputs.get("items"), limit)
        errors += [_fmt_issue(i.path, issue, limit) for i in inputs.values() for issue in i.issues]
        if errors:
            raise DataError(
                f"ingest rejected, nothing was written ({len(errors)} problem(s); {ROWS_NOTE}):\n  - "
                + "\n  - ".join(errors)
            )
        return _write(settings, ws, spec, inputs, paths, started)


def _write(settings: Settings, ws: Workspace, spec: FeatureSpec, inputs: dict[str, _Input], paths: dict,
           started: float) -> IngestSummary:
    counts: dict[str, int] = {}
    days: tuple[date, ...] = ()
    ws.offline.mkdir(parents=True, exist_ok=True)
    with OfflineCommit(ws.offline) as tx:
        for kind, tower in (("users", spec.user), ("items", spec.item)):
            if kind not in inputs:
                continue
            key, path, table_schema = tower.join_key, paths[kind], schema.tower_table(tower)
            incoming = inputs[kind].table
            stored = read_store(path, table_schema).select(table_schema.names).cast(table_schema)
            merged, replaced = upsert(stored, incoming, key)
            tx.put_file(path, parquet_bytes(merged))
            counts[kind], counts[f"{kind}_replaced"] = incoming.num_rows, replaced
        if "events" in inputs:
            table = inputs["events"].table
            written = []
            for day, parts in event_days(table, settings.ingest.rows_per_file):
                tx.put_dir(ws.events_day_dir(day), parts)
                written.append(day)
            days = tuple(written)
        tx.commit()
    ev = inputs.get("events")
    return IngestSummary(
        users=counts.get("users", 0),
        users_added=counts.get("users", 0) - counts.get("users_replaced", 0),
        users_replaced=counts.get("users_replaced", 0),
        items=counts.get("items", 0),
        items_added=counts.get("items", 0) - counts.get("items_replaced", 0),
        items_replaced=counts.get("items_replaced", 0),
        events=ev.table.num_rows if ev else 0,
        days=days,
        generated_event_ids=ev.valid.generated_event_ids if ev else 0,
        ignored_columns={str(i.path): tuple(i.valid.ignored_columns)
                         for i in inputs.values() if i.valid.ignored_columns},
        seconds=time.perf_counter() - started,
    )
