"""``twotower emit --day D``: replay a day of the offline store onto the stream, in time order
(event time as recorded), e.g. the day after the served generation's. (``--user U --category
C`` belongs to the simulator's world: ``twotower.research.simulate.clicks``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from twotower.core.config import Settings
from twotower.core.errors import UserError
from twotower.core.workspace import Workspace



@dataclass
class Emitted:
    events: int
    clicks: int
    end: str  # stream position after the appended events
    first_event: datetime | None = None
    last_event: datetime | None = None

    def line(self) -> str:
        span = f" ({self.first_event.isoformat()} .. {self.last_event.isoformat()})" if self.events else ""
        return f"appended {self.events:,} events ({self.clicks:,} clicks){span}; stream end {self.end}"


def day_events(ws: Workspace, day: date) -> pd.DataFrame:
    """The day's events from the offline store, in time order (ties by event_id)."""
    path = ws.events_day_dir(day)
    if not path.is_dir():
        have = ", ".join(str(d) for d in ws.days()) or "none"
        raise UserError(f"--day {day}: no events in {path} (have: {have})")
    events = pd.read_parquet(path)
    return events.sort_values(["event_timestamp", "event_id"], kind="stable").reset_index(drop=True)


def append_events(settings: Settings, ws: Workspace, events: pd.DataFrame) -> Emitted:
    """Append an events frame to the workspace's stream."""
    from twotower.stream import open_stream

    stream = open_stream(settings, ws)
    try:
        end = stream.append(events)
    finally:
        stream.close()
    ts = events["event_timestamp"]
    return Emitted(
        len(events), int((events["event_type"] == "click").sum()), end,
        ts.min().to_pydatetime() if len(events) else None, ts.max().to_pydatetime() if len(events) else None,
    )  # fmt: skip


def emit_day(settings: Settings, ws: Workspace, day: date) -> Emitted:
    return append_events(settings, ws, day_events(ws, day))
