"""Raw values -> the towers' inputs, the same in training, export and serving (numpy / pandas).

Categorical / multi values become int64 *keys* (``ABSENT`` = missing value or list padding;
strings hashed with ``hash_strings``), numeric / vector values float32 (NaN = missing). IDs
become int64 keys the same way (``id_keys``), while the original IDs travel beside them
(``id_array``) wherever IDs leave the platform. What each feature is: ``core.features``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from twotower.core.errors import DataError
from twotower.core.features import Feature, Tower

ABSENT = -1
SMALL = 64  # rows up to which encode takes the per-value path (serving's batches)


def hash_strings(values: Sequence) -> np.ndarray:
    """Stable non-negative int64 keys of strings (pandas' SipHash with its fixed key): the same
    in every process and on every machine."""
    arr = np.asarray(values, dtype=object)
    if len(arr) == 0:
        return np.zeros(0, np.int64)
    return (pd.util.hash_array(arr, categorize=True) >> np.uint64(1)).astype(np.int64)


def id_array(values) -> np.ndarray:
    """IDs as given, as an array ``np.save`` / ``np.savez`` store without pickling: int64 for
    integer IDs, fixed-width unicode for string IDs (leading zeros and all kept)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "U":
        return arr
    return np.asarray([str(v) for v in arr.tolist()], dtype=str) if len(arr) else np.zeros(0, dtype="<U1")


def id_key_array(values) -> np.ndarray:
    """``id_keys`` of an ``id_array``, its type read from the array (int64: itself, else hashed)."""
    arr = np.asarray(values)
    return arr.astype(np.int64, copy=False) if arr.dtype.kind in "iu" else hash_strings(arr.astype(object))


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA


def id_keys(values, id_type: str, where: str = "IDs") -> np.ndarray:
    """IDs (ints, or strings for a String join key) -> int64 keys, checked."""
    arr = np.asarray(values)
    if id_type == "int":
        if arr.dtype.kind in "iu":
            return arr.astype(np.int64, copy=False)
        if arr.dtype.kind == "f" and len(arr) and np.all(np.isfinite(arr)) and np.all(arr == np.floor(arr)):
            return arr.astype(np.int64)
        if len(arr) == 0:
            return np.zeros(0, np.int64)
        bad = next((v for v in arr.tolist() if not isinstance(v, (int, np.integer)) or isinstance(v, bool)), arr[0])
        raise DataError(f"{where}: the entity's join key is Int64 but got {bad!r} ({type(bad).__name__})")
    if arr.dtype.kind in ("U", "S"):
        return hash_strings(arr.astype(str).astype(object))
    if len(arr) == 0:
        return np.zeros(0, np.int64)
    objs = arr.astype(object)
    bad = next((v for v in objs.tolist() if not isinstance(v, str)), None)
    if bad is not None:
        raise DataError(f"{where}: the entity's join key is String but got {bad!r} ({type(bad).__name__})")
    return hash_strings(objs)


def _small_keys(values, f: Feature) -> np.ndarray | None:
    """The request path's few values (Python ints / strs / bools, None = missing) -> keys, or None
    to take the general path (anything else, or a value it must report)."""
    if f.value == "string":
        if not all(type(v) is str or v is None for v in values):
            return None
        out = np.full(len(values), ABSENT, np.int64)
        present = [i for i, v in enumerate(values) if v is not None]
        if present:
            out[present] = hash_strings([values[i] for i in present])
        return out
    kind = bool if f.value == "bool" else int
    if not all(type(v) is kind or v is None for v in values):
        return None
    try:
        return np.array([ABSENT if v is None else int(v) for v in values], dtype=np.int64)
    except OverflowError:
        return None


def _scalar_keys(values: np.ndarray, f: Feature, where: str) -> np.ndarray:
    """Categorical values (objects, None = missing) -> int64 keys."""
    if values.dtype == object and len(values) <= SMALL:
        fast = _small_keys(values.tolist(), f)
        if fast is not None:
            return fast
    out = np.full(len(values), ABSENT, np.int64)
    present = np.array([not _missing(v) for v in values], dtype=bool) if values.dtype == object else ~pd.isna(values)
    if not present.any():
        return out
    got = values[present]
    if f.value == "string":
        try:
            bad = next((v for v in got.tolist() if not isinstance(v, str)), None)
            if bad is not None:
                raise DataError(f"{where}: feature {f.ref} ({f.dtype}) got {bad!r}, not a string")
            out[present] = hash_strings(got.tolist())
        except TypeError as exc:
            raise DataError(str(exc)) from None
    elif f.value == "bool":
        out[present] = np.asarray(got, dtype=bool).astype(np.int64)
    else:
        try:
            ints = np.asarray(got.tolist() if got.dtype == object else got)
            if ints.dtype.kind == "f":
                if not np.all(ints == np.floor(ints)):
                    raise ValueError
            elif ints.dtype.kind not in "iub":
                raise ValueError
            out[present] = ints.astype(np.int64)
        except (ValueError, TypeError):
            bad = next(v for v in got.tolist() if not isinstance(v, (int, np.integer, float)) or v != int(v))
            raise DataError(f"{where}: feature {f.ref} ({f.dtype}) got {bad!r}") from None
    return out


def _array(values) -> np.ndarray:
    """A 1-D array of the column's values (a list of equal-length lists stays 1-D, of objects)."""
    if isinstance(values, pd.Series):
        return values.to_numpy()
    if isinstance(values, np.ndarray):
        return values
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def encode(f: Feature, values, where: str = "data") -> np.ndarray:
    """Raw column values -> the model's input: ``[n]`` (categorical, numeric) or ``[n, width]``."""
    values = _array(values)
    n = len(values)
    if f.kind == "categorical":
        return _scalar_keys(values, f, where)
    if f.kind == "numeric":
        try:
            if values.dtype != object:
                return values.astype(np.float32)
            return np.array([np.nan if _missing(v) else float(v) for v in values], dtype=np.float32)
        except (TypeError, ValueError):
            bad = next(v for v in values.tolist() if not _missing(v) and not isinstance(v, (int, float, np.number)))
            raise DataError(f"{where}: feature {f.ref} ({f.dtype}) got {bad!r}, not a number") from None
    lists = [None if _missing(v) else v for v in values.tolist()] if values.dtype == object else list(values)
    if f.kind == "vector":
        out = np.full((n, f.dim), np.nan, np.float32)
        for i, v in enumerate(lists):
            if v is None:
                continue
            v = np.asarray(v, dtype=np.float32).reshape(-1)
            if len(v) != f.dim:
                raise DataError(f"{where}: feature {f.ref} ({f.dtype}) must have length {f.dim}, row {i} has {len(v)}")
            out[i] = v
        return out
    # multi: flatten, encode every element once, scatter back truncated / padded with ABSENT
    out = np.full((n, f.max_len), ABSENT, np.int64)
    if n <= SMALL:  # the request path: a few users, a Python loop beats the array set-up
        flat = [x for v in lists if v is not None for x in list(v)[: f.max_len]]
        keys = _small_keys(flat, f) if all(not isinstance(v, np.ndarray) for v in lists) else None
        if keys is not None:
            at = 0
            for i, v in enumerate(lists):
                k = 0 if v is None else min(len(v), f.max_len)
                out[i, :k] = keys[at : at + k]
                at += k
            return out
    lengths = np.array([0 if v is None else min(len(v), f.max_len) for v in lists], dtype=np.int64)
    if lengths.sum() == 0:
        return out
    flat = np.empty(int(lengths.sum()), dtype=object)
    at = 0
    for v, k in zip(lists, lengths.tolist()):
        if k:
            flat[at : at + k] = list(v)[:k]
            at += k
    keys = _scalar_keys(flat, f, where)
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, cols] = keys
    return out


def encode_frame(tower: Tower, frame: pd.DataFrame, where: str = "data") -> dict[str, np.ndarray]:
    """Every feature of the tower present in ``frame`` (by feature name), encoded."""
    missing = [f.name for f in tower.features if f.name not in frame.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)} of feature service {tower.service!r}")
    return {f.name: encode(f, frame[f.name], where) for f in tower.features}


def absent(f: Feature, n: int) -> np.ndarray:
    """Encoded "no value" for ``n`` rows (a profile row that does not exist yet)."""
    if f.kind == "categorical":
        return np.full(n, ABSENT, np.int64)
    if f.kind == "numeric":
        return np.full(n, np.nan, np.float32)
    if f.kind == "multi":
        return np.full((n, f.max_len), ABSENT, np.int64)
    return np.full((n, f.dim), np.nan, np.float32)


def context_values(timestamps: pd.Series, context: Iterable[str]) -> dict[str, np.ndarray]:
    """Request context of each (UTC) timestamp: ``hour`` 0..23, ``weekday`` 0 (Monday)..6."""
    ts = pd.to_datetime(timestamps, utc=True)
    out = {}
    for name in context:
        out[name] = (ts.dt.hour if name == "hour" else ts.dt.weekday).to_numpy(np.int64)
    return out
