"""The event stream past one machine: a Redis Stream with a consumer group.

One stream entry per event (fields ``e r u i t p ts``: event_id, request_id, user_id, item_id,
event_type, position, event time in microseconds), appended with ``XADD`` inside one
``MULTI/EXEC`` per append (all or nothing). Entry IDs are the positions; ``appended_at`` is
the millisecond part of the ID (when Redis accepted the entry).

The committed position of a group is the consumer group's *last-delivered ID*, moved with
``XGROUP SETID`` (one atomic command) after the consumer has made its work durable. Entries are
read with ``XRANGE`` after the position the consumer's own state says it has processed, not with
``XREADGROUP``: the consumer's state and position are persisted together (see
twotower/pipelines/incremental/state.py), so it never needs the pending-entries list to find out what to
redo, and a rewind (a new generation's chain starting earlier) is one ``SETID``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pandas as pd

from twotower.core.config import StreamSettings
from twotower.core.errors import UserError
from twotower.stream.base import APPENDED_AT, SCHEMA, EventStream, StreamBatch, empty_events, to_events_table



class RedisEventStream(EventStream):
    kind = "redis"
    beginning = "0-0"

    def __init__(self, settings: StreamSettings):
        import redis

        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        self.where = f"Redis at {settings.redis_host}:{settings.redis_port} (stream.redis_host/stream.redis_port)"
        self.key = settings.name
        self.client = redis.Redis(
            host=settings.redis_host, port=settings.redis_port, db=settings.redis_db, password=password,
            socket_connect_timeout=5, socket_timeout=30,
        )  # fmt: skip
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise UserError(f"cannot reach the event stream: {self.where}: {exc}") from None

    def append(self, events: pd.DataFrame) -> str:
        table = to_events_table(events)
        if table.num_rows == 0:
            return self.end()
        cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
        ts = cols["event_timestamp"].astype("datetime64[us]").astype(np.int64)
        # String IDs go in fields "U" / "I", integer ones in "u" / "i": read back with their type.
        user_field = "U" if pa.types.is_string(table.schema.field("user_id").type) else "u"
        item_field = "I" if pa.types.is_string(table.schema.field("item_id").type) else "i"
        as_id = lambda v, field: v if field.isupper() else int(v)  # noqa: E731
        with self.client.pipeline(transaction=True) as pipe:
            for i in range(table.num_rows):
                pipe.xadd(self.key, {
                    "e": int(cols["event_id"][i]), "r": int(cols["request_id"][i]),
                    user_field: as_id(cols["user_id"][i], user_field), item_field: as_id(cols["item_id"][i], item_field),
                    "t": cols["event_type"][i], "p": int(cols["position"][i]), "ts": int(ts[i]),
                })  # fmt: skip
            ids = pipe.execute()
        return ids[-1].decode()

    @staticmethod
    def _frame(entries: list) -> pd.DataFrame:
        if not entries:
            return empty_events()
        ids = [e[0].decode() for e in entries]
        first = entries[0][1]
        user_field, item_field = (b"U" if b"U" in first else b"u"), (b"I" if b"I" in first else b"i")
        fields_ = (b"e", b"r", user_field, item_field, b"t", b"p", b"ts")
        values = [[fields[k] for k in fields_] for _, fields in entries]
        e, r, u, i, t, p, ts = zip(*values)
        appended_ms = np.array([int(x.split("-", 1)[0]) for x in ids], dtype=np.int64)

        def id_column(raw, field: bytes) -> np.ndarray:
            return np.array([x.decode() for x in raw], dtype=object) if field.isupper() else np.array(raw, dtype=np.int64)

        frame = pd.DataFrame({
            "event_id": np.array(e, dtype=np.int64), "request_id": np.array(r, dtype=np.int64),
            "user_id": id_column(u, user_field), "item_id": id_column(i, item_field),
            "event_type": [x.decode() for x in t], "position": np.array(p, dtype=np.int32),
            "event_timestamp": pd.to_datetime(np.array(ts, dtype=np.int64), unit="us", utc=True),
            APPENDED_AT: pd.to_datetime(appended_ms * 1000, unit="us", utc=True),
        })  # fmt: skip
        frame.attrs["ids"] = ids
        return frame[list(SCHEMA.names)]

    def read(self, after: str, max_events: int) -> StreamBatch:
        low = "-" if after == self.beginning else f"({after}"
        entries = self.client.xrange(self.key, min=low, max="+", count=max_events)
        frame = self._frame(entries)
        ids = np.array(frame.attrs.get("ids", []), dtype=object)
        return StreamBatch(frame, after, str(ids[-1]) if len(ids) else after, ids)

    def read_before(self, position: str, count: int) -> pd.DataFrame:
        if position == self.beginning or count <= 0:
            return empty_events()
        # A position is the ID of the last entry processed: that entry is before the next batch.
        entries = self.client.xrevrange(self.key, max=position, min="-", count=count)
        return self._frame(entries[::-1])

    def end(self) -> str:
        last = self.client.xrevrange(self.key, max="+", min="-", count=1)
        return last[0][0].decode() if last else self.beginning

    def lag(self, position: str) -> int | None:
        """0 when ``position`` is the end; else unknown (Redis cannot count a range cheaply)."""
        return 0 if position == self.end() else None

    def committed(self, group: str) -> str | None:
        import redis

        try:
            groups = self.client.xinfo_groups(self.key)
        except redis.ResponseError:  # no such stream yet
            return None
        for g in groups:
            if g["name"].decode() == group:
                return g["last-delivered-id"].decode()
        return None

    def commit(self, group: str, position: str) -> None:
        import redis

        try:
            self.client.xgroup_setid(self.key, group, position)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc) and "no such key" not in str(exc).lower():
                raise
            self.client.xgroup_create(self.key, group, id=position, mkstream=True)

    def close(self) -> None:
        self.client.close()
