"""The towers' feature views read from their offline sources (the FileSources the feature repo declares).

``view_tables``: each view's rows as its source holds them (every version of a profile, with
its timestamp) - what the point-in-time join of the examples takes. ``tower_frame``: the
newest row of every entity up to a time, all of the tower's views merged on the join key - what
the item catalogue, the item vectors and the numeric statistics take. A source is a parquet
file or a directory of them (Feast's FileSource), read once per process while unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from twotower.core.errors import UserError
from twotower.core.features import WORKSPACE, Tower

_CACHE: dict[tuple, pd.DataFrame] = {}  # (path, mtime, size) -> rows, per process


def _stamp(path: Path) -> tuple:
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        return (str(path), tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files))
    st = os.stat(path)
    return (str(path), st.st_mtime_ns, st.st_size)


def read_source(path: str | Path, where: str) -> pd.DataFrame:
    """A FileSource's rows (cached per process while the files are unchanged)."""
    if WORKSPACE in str(path):
        raise UserError(f"{where}: source {path} is relative to a workspace: bind the spec first (FeatureSpec.bind)")
    path = Path(path)
    if not path.exists():
        raise UserError(f"{where}: its source {path} does not exist")
    key = _stamp(path)
    if key not in _CACHE:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = pd.read_parquet(path)
    return _CACHE[key]


def view_tables(tower: Tower) -> dict[str, pd.DataFrame]:
    """View name -> its source's rows (the columns the tower needs)."""
    out = {}
    for view in tower.views():
        source = tower.source(view)
        frame = read_source(source.path, f"feature view {view!r}")
        wanted = [tower.join_key, source.timestamp_field, *([source.created_timestamp_column] if source.created_timestamp_column else []),
                  *(f.name for f in tower.features if f.view == view)]  # fmt: skip
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise UserError(f"feature view {view!r}: its source {source.path} lacks column(s) {', '.join(missing)}")
        out[view] = frame.loc[:, list(dict.fromkeys(wanted))]
    return out


def tower_frame(tower: Tower, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """The newest row of each entity valid before ``until`` (all rows if None), views merged on the
    join key (an entity missing from a view gets nulls there); ``event_timestamp`` = its newest."""
    key = tower.join_key
    merged: pd.DataFrame | None = None
    if not tower.views():  # an ID-only tower: no rows of its own
        return pd.DataFrame({key: pd.Series([], dtype="int64" if tower.id_type == "int" else object),
                             "event_timestamp": pd.Series([], dtype="datetime64[us, UTC]")})  # fmt: skip
    for view, frame in view_tables(tower).items():
        source = tower.source(view)
        ts = pd.to_datetime(frame[source.timestamp_field], utc=True)
        if until is not None:
            frame, ts = frame.loc[ts < until], ts.loc[ts < until]
        order = [source.timestamp_field] + ([source.created_timestamp_column] if source.created_timestamp_column else [])
        latest = frame.assign(**{source.timestamp_field: ts}).sort_values(order, kind="stable").drop_duplicates(key, keep="last")
        latest = latest.rename(columns={source.timestamp_field: f"_ts_{view}"})
        latest = latest.drop(columns=[c for c in (source.created_timestamp_column,) if c and c in latest.columns])
        merged = latest if merged is None else merged.merge(latest, on=key, how="outer")
    assert merged is not None
    stamps = [c for c in merged.columns if c.startswith("_ts_")]
    merged["event_timestamp"] = merged[stamps].max(axis=1)
    return merged.drop(columns=stamps).sort_values(key, kind="stable").reset_index(drop=True)
