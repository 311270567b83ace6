"""``feast materialize`` of the offline tables into the online store: a batch job (Feast's Dask
offline store reads the parquet tables, so the fast Dask tokens for list columns are installed
first: see twotower/adapters/dask_tokens.py)."""

from __future__ import annotations

from datetime import datetime

from twotower.adapters import dask_tokens  # noqa: F401  (installs the tokenizer on import)
from twotower.core.config import Settings
from twotower.core.logs import printed_as_log
from twotower.core.workspace import Workspace
from twotower.feature_store import store


def materialize(settings: Settings, ws: Workspace, end: datetime, views: list[str] | None = None) -> None:
    """``feast materialize-incremental`` up to ``end`` for the given views (default: all)."""
    with printed_as_log("feast"):
        store(settings, ws).materialize_incremental(end_date=end, feature_views=views)
