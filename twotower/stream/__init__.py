"""The live event stream the incremental updater consumes (DESIGN: intraday data flow).

``open_stream(settings, ws)`` gives the configured ``EventStream``: the file log in the
workspace by default (``stream.type = "file"``), Redis Streams past one machine
(``stream.type = "redis"``). Both have the same small contract (base.py): append, read after
a position, read the entries before a position, end, and a committed position per consumer
group. ``emit`` puts events on it (a day replayed from the offline store, or one user's clicks).
"""

from __future__ import annotations


from twotower.core.config import Settings
from twotower.stream.base import APPENDED_AT, COLUMNS, EventStream, StreamBatch
from twotower.core.workspace import Workspace

__all__ = ["APPENDED_AT", "COLUMNS", "EventStream", "StreamBatch", "open_stream"]


def open_stream(settings: Settings, ws: Workspace) -> EventStream:
    if settings.stream.type == "redis":
        from twotower.stream.redis_streams import RedisEventStream

        return RedisEventStream(settings.stream)
    from twotower.stream.file_log import FileEventLog

    return FileEventLog(ws.stream_dir / settings.stream.name)
