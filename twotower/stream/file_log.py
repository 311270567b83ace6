"""The embedded event stream: an append-only log of Arrow files in the workspace.

Layout of ``<workspace>/stream/<name>/``::

    chunks/<first:020d>-<count:010d>.arrow   one file per append: entries first .. first+count-1
    groups/<group>.json                      {"position": "<entries processed>", "updated_at": ...}
    .append.lock                             appenders hold it (flock) while they number a chunk

A position is the number of entries before it. An append writes its chunk under a temporary
name, fsyncs it and renames it into place while holding the lock, so readers see whole chunks
in order and never a torn one; a crashed append leaves only a ``.tmp-*`` file that is ignored
(and removed by the next append). A group's position is one small file replaced atomically.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from twotower.core.errors import DataError, UserError
from twotower.stream.base import APPENDED_AT, SCHEMA, EventStream, StreamBatch, empty_events, now_utc, to_events_table
from twotower.core.files import atomic_file, atomic_write_bytes, file_lock

_CHUNK = re.compile(r"^(\d{20})-(\d{10})\.arrow$")


class FileEventLog(EventStream):
    kind = "file"
    beginning = "0"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.chunks_dir = self.root / "chunks"
        self.groups_dir = self.root / "groups"
        self._cache: dict[str, pa.Table] = {}  # chunk name -> table (chunks never change)

    # --- chunks ---------------------------------------------------------------------------
    def _chunks(self) -> list[tuple[int, int, Path]]:
        if not self.chunks_dir.is_dir():
            return []
        found = []
        for entry in os.scandir(self.chunks_dir):
            m = _CHUNK.match(entry.name)
            if m:
                found.append((int(m.group(1)), int(m.group(2)), Path(entry.path)))
        return sorted(found)

    def _end(self, chunks: list[tuple[int, int, Path]] | None = None) -> int:
        chunks = self._chunks() if chunks is None else chunks
        return chunks[-1][0] + chunks[-1][1] if chunks else 0

    def _table(self, path: Path) -> pa.Table:
        table = self._cache.get(path.name)
        if table is None:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[path.name] = table
        return table

    @contextmanager
    def _append_lock(self) -> Iterator[None]:
        with file_lock(self.root / ".append.lock"):
            yield

    # --- the contract ---------------------------------------------------------------------
    def append(self, events: pd.DataFrame) -> str:
        table = to_events_table(events)
        if table.num_rows == 0:
            return self.end()
        stamp = pa.array(np.full(table.num_rows, pd.Timestamp(now_utc()).as_unit("us")), SCHEMA.field(APPENDED_AT).type)
        table = table.append_column(SCHEMA.field(APPENDED_AT), stamp)  # IDs keep their type (int64 or string)
        with self._append_lock():
            self.chunks_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.chunks_dir.glob(".tmp-*"):
                stale.unlink(missing_ok=True)
            chunks = self._chunks()
            if chunks:  # one log, one ID type per column (int64 or string, as the first append had)
                have = self._table(chunks[-1][2]).schema
                for name in ("user_id", "item_id"):
                    if have.field(name).type != table.schema.field(name).type:
                        raise DataError(f"events: column {name!r} holds {table.schema.field(name).type} IDs but the "
                                        f"stream {self.root} holds {have.field(name).type} ones")  # fmt: skip
            first = self._end(chunks)
            with atomic_file(self.chunks_dir / f"{first:020d}-{table.num_rows:010d}.arrow") as fh:
                with pa.ipc.new_file(fh, table.schema) as writer:
                    writer.write_table(table)
            return str(first + table.num_rows)

    def _position(self, position: str, end: int) -> int:
        try:
            p = int(position)
        except (TypeError, ValueError):
            raise UserError(f"stream {self.root}: position {position!r} is not an entry count") from None
        if not 0 <= p <= end:
            raise UserError(f"stream {self.root}: position {p} is outside 0..{end} (was the log replaced?)")
        return p

    def _slice(self, lo: int, hi: int, chunks) -> pd.DataFrame:
        parts = []
        for first, count, path in chunks:
            if first + count <= lo or first >= hi:
                continue
            a, b = max(lo - first, 0), min(hi - first, count)
            parts.append(self._table(path).slice(a, b - a))
        if not parts:
            return empty_events()
        return pa.concat_tables(parts).to_pandas()

    def read(self, after: str, max_events: int) -> StreamBatch:
        chunks = self._chunks()
        end = self._end(chunks)
        p = self._position(after, end)
        hi = min(end, p + max_events)
        events = self._slice(p, hi, chunks)
        positions = np.arange(p + 1, hi + 1).astype(str).astype(object)
        return StreamBatch(events, str(p), str(hi), positions)

    def read_before(self, position: str, count: int) -> pd.DataFrame:
        chunks = self._chunks()
        p = self._position(position, self._end(chunks))
        return self._slice(max(0, p - count), p, chunks)

    def end(self) -> str:
        return str(self._end())

    def lag(self, position: str) -> int | None:
        end = self._end()
        return end - self._position(position, end)

    def _group_file(self, group: str) -> Path:
        return self.groups_dir / f"{group}.json"

    def committed(self, group: str) -> str | None:
        path = self._group_file(group)
        if not path.exists():
            return None
        return str(json.loads(path.read_text())["position"])

    def commit(self, group: str, position: str) -> None:
        self._position(position, self._end())
        payload = {"position": str(position), "updated_at": now_utc().isoformat()}
        atomic_write_bytes(self._group_file(group), json.dumps(payload).encode())
