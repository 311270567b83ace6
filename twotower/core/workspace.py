"""Where everything the platform writes lives.

One workspace = one world: offline store, Feast registry and SQLite online store, TFRecords,
models, Annoy indexes, generations, GX results and the event log. Several workspaces can live
side by side (tests create their own in a temporary directory).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    root: Path

    # --- offline store -------------------------------------------------------------------
    @property
    def offline(self) -> Path:
        return self.root / "offline"

    @property
    def users_path(self) -> Path:
        return self.offline / "users.parquet"

    @property
    def items_path(self) -> Path:
        return self.offline / "items.parquet"

    @property
    def events_dir(self) -> Path:
        return self.offline / "events"

    def events_day_dir(self, day: date) -> Path:
        return self.events_dir / f"day={day.isoformat()}"

    @property
    def user_embeddings_dir(self) -> Path:
        """Batch source of the Feast ``user_id_embedding`` view (one parquet per generation)."""
        return self.offline / "user_id_embedding"

    @property
    def recent_clicks_dir(self) -> Path:
        """Batch source of the optional ``features.history_view`` (one parquet per full update)."""
        return self.offline / "recent_clicks"

    @property
    def truth_dir(self) -> Path:
        """The simulator's ground truth (latent preferences), for oracle recall."""
        return self.root / "truth"

    # --- feature store --------------------------------------------------------------------
    @property
    def feast_dir(self) -> Path:
        return self.root / "feast"

    @property
    def feature_store_yaml(self) -> Path:
        return self.feast_dir / "feature_store.yaml"

    @property
    def feature_spec_path(self) -> Path:
        """The feature spec of the last ``feast apply`` (twotower/core/features.py)."""
        return self.feast_dir / "spec.json"

    # --- batch outputs --------------------------------------------------------------------
    def tfrecords_dir(self, day: date) -> Path:
        return self.root / "tfrecords" / day.isoformat()

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def generations_dir(self) -> Path:
        return self.root / "generations"

    @property
    def gx_dir(self) -> Path:
        return self.root / "gx"

    @property
    def stream_dir(self) -> Path:
        return self.root / "stream"

    @property
    def incremental_dir(self) -> Path:
        """State of the intraday incremental chain, one folder per generation (never a full
        update's starting point; discarded when the next generation is published)."""
        return self.root / "incremental"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def serving_dir(self) -> Path:
        """What ``twotower serve`` processes leave behind: their latency snapshots."""
        return self.root / "serving"

    def days(self) -> list[date]:
        """Days present in the offline event store, in order."""
        if not self.events_dir.is_dir():
            return []
        return sorted(
            date.fromisoformat(p.name.split("=", 1)[1])
            for p in self.events_dir.iterdir()
            if p.is_dir() and p.name.startswith("day=")
        )

    def ensure(self) -> "Workspace":
        for d in (self.offline, self.feast_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self
