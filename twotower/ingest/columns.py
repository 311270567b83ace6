"""Column parsers for ``twotower ingest``: one raw input column in, typed values out.

Pure functions over whole columns (pyarrow compute + numpy, no Python loop over rows), so a
million events parse in about a second. A parser never raises on bad data: it returns the values
it could read together with a mask per kind of problem, because the caller wants to report
*every* offending row of a file in one message and then write nothing.

Raw columns come either from a CSV (always strings: the CSV reader does no type guessing, so
"007" stays an ID and "" means missing) or from parquet (native types). Every parser accepts
both. The exact accepted forms are documented in docs/data-schema.md; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

INT64_MAX = np.iinfo(np.int64).max
INT32_MAX = np.iinfo(np.int32).max
US_PER_DAY = 86_400_000_000
EPOCH_MS_FROM = 10**11
"""Integer timestamps below this are epoch seconds, from it on epoch milliseconds (10**11 s is
the year 5138; 10**11 ms is 1973-03-03), so every realistic value has one reading."""
MIN_US = 0  # 1970-01-01T00:00:00Z
MAX_US = int((np.datetime64("2262-01-01", "us") - np.datetime64(0, "us")).astype(np.int64))
"""Exclusive upper bound: later instants overflow the nanosecond timestamps pandas uses."""

_ISO = (
    r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"(?:[Tt ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?"
    r"\s*(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?)?$"
)
_OFFSET = r"^(?P<sign>[+-])(?P<hh>\d{2}):?(?P<mm>\d{2})?$"


@dataclass
class Parsed:
    """What a parser read from one column.

    ``values`` has one entry per row (arbitrary where ``null`` or a ``bad`` mask is set);
    ``null`` marks missing cells (empty CSV field or parquet null); ``bad`` lists
    ``(reason, mask)`` for present values that are not acceptable.
    """

    values: np.ndarray | pa.Array
    null: np.ndarray
    bad: list[tuple[str, np.ndarray]] = field(default_factory=list)


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def _plain(arr: pa.Array) -> pa.Array:
    """Undo dictionary encoding and large offsets so one code path handles each kind."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _strings(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Trimmed strings without nulls, and the mask of missing cells (null or blank)."""
    s = pc.utf8_trim_whitespace(pc.fill_null(arr, ""))
    return s, _np(pc.equal(s, ""))


def _wrong_type(arr: pa.Array, expected: str) -> Parsed:
    null = _np(arr.is_null())
    return Parsed(np.zeros(len(arr), np.int64), null, [(f"has type {arr.type}, expected {expected}", ~null)])


def parse_int(arr: pa.Array, lo: int = -INT64_MAX, hi: int = INT64_MAX) -> Parsed:
    """Integers: decimal strings (optional sign, a ``.0`` tail is tolerated), integer types, or
    floats holding whole numbers (how pandas stores an integer column with gaps)."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_string(t):
        s, null = _strings(arr)
        try:  # fast path: plain decimal integers (the common case) need no regex
            if pc.any(pc.match_substring(s, "x", ignore_case=True)).as_py():
                raise pa.ArrowInvalid("arrow would read 0x.. as hexadecimal")
            values = _np(pc.cast(pc.if_else(pa.array(null), "0", s), pa.int64()))
            return _in_range(Parsed(values, null, [("not an integer", np.zeros(len(s), bool))]), lo, hi)
        except pa.ArrowInvalid:
            pass
        ok = _np(pc.match_substring_regex(s, r"^[+-]?\d+(\.0*)?$")) & ~null
        digits = pc.replace_substring_regex(pc.replace_substring_regex(s, r"\.0*$", ""), r"^\+", "")
        body = pc.replace_substring_regex(digits, r"^-?0*", "")
        length = _np(pc.utf8_length(body))
        over = (length > 19) | ((length == 19) & _np(pc.greater(body, str(INT64_MAX))))
        ok &= ~over
        values = _np(pc.cast(pc.if_else(pa.array(ok), digits, "0"), pa.int64()))
        bad = [("not an integer", ~ok & ~null)]
    elif pa.types.is_integer(t):
        null = _np(arr.is_null())
        wide = _np(pc.fill_null(arr, 0))
        over = wide > INT64_MAX if t == pa.uint64() else np.zeros(len(arr), bool)
        values = np.where(over, 0, wide).astype(np.int64)
        bad = [("not an int64 integer (too large)", over & ~null)]
    elif pa.types.is_floating(t):
        null = _np(arr.is_null())
        x = _np(pc.fill_null(arr, 0)).astype(np.float64)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(x) & (x == np.floor(x)) & (np.abs(x) <= 2**53)
        values = np.where(ok, x, 0).astype(np.int64)
        bad = [("not an integer", ~ok & ~null)]
    else:
        return _wrong_type(arr, "integer")
    return _in_range(Parsed(values, null, bad), lo, hi)


def _in_range(p: Parsed, lo: int, hi: int) -> Parsed:
    outside = ((p.values < lo) | (p.values > hi)) & ~p.null
    for _, mask in p.bad:
        outside &= ~mask
    p.bad.append((f"out of range {lo}..{hi}", outside))
    return p


def epoch_to_us(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds (below 10**11) or milliseconds (from 10**11) to microseconds, and the mask
    of values outside the supported range (negative, or from 2262 on)."""
    v = np.asarray(v, np.int64)
    bad = (v < 0) | (v >= MAX_US // 1000)
    safe = np.where(bad, 0, v)
    us = np.where(safe < EPOCH_MS_FROM, safe * 1_000_000, safe * 1_000)
    bad |= us >= MAX_US
    return np.where(bad, 0, us), bad


def _iso_to_us(s: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """ISO 8601 strings to microseconds since the epoch, and the mask of unparsable ones.

    Written here rather than with ``pandas.to_datetime(format="ISO8601")`` because pandas
    2.x applies the offset of an earlier value to later values that have none, which would
    silently shift naive (= UTC) timestamps in a column that mixes both.
    """
    m = pc.extract_regex(s, _ISO)
    ok = _np(m.is_valid())
    parts = {}
    for name in ("y", "mo", "d", "h", "mi", "s"):
        col = pc.fill_null(pc.struct_field(m, name), "")
        parts[name] = _np(pc.cast(pc.if_else(pc.equal(col, ""), "0", col), pa.int64()))
    frac = pc.fill_null(pc.struct_field(m, "f"), "")
    micro = _np(pc.cast(pc.utf8_slice_codeunits(pc.utf8_rpad(frac, 9, "0"), 0, 6), pa.int64()))
    y, mo, d = parts["y"], parts["mo"], parts["d"]
    ok &= (mo >= 1) & (mo <= 12) & (d >= 1) & (d <= 31)
    ok &= (parts["h"] <= 23) & (parts["mi"] <= 59) & (parts["s"] <= 59)
    month = np.where(ok, (y - 1970) * 12 + (mo - 1), 0).astype("datetime64[M]")
    day = month.astype("datetime64[D]") + np.where(ok, d - 1, 0)
    ok &= day.astype("datetime64[M]") == month  # rejects 2026-02-30
    days = day.astype(np.int64)

    tz = pc.fill_null(pc.struct_field(m, "tz"), "")
    off = pc.extract_regex(tz, _OFFSET)
    hh = _np(pc.cast(pc.fill_null(pc.struct_field(off, "hh"), "0"), pa.int64()))
    mm_s = pc.fill_null(pc.struct_field(off, "mm"), "")
    mm = _np(pc.cast(pc.if_else(pc.equal(mm_s, ""), "0", mm_s), pa.int64()))
    sign = np.where(_np(pc.equal(pc.fill_null(pc.struct_field(off, "sign"), "+"), "-")), -1, 1)
    ok &= (hh <= 23) & (mm <= 59)
    offset_us = sign * (hh * 3600 + mm * 60) * 1_000_000

    us = (
        days * US_PER_DAY
        + (parts["h"] * 3600 + parts["mi"] * 60 + parts["s"]) * 1_000_000
        + micro
        - offset_us
    )
    ok &= (us >= MIN_US) & (us < MAX_US)
    return np.where(ok, us, 0), ~ok


_TS_REASON = "not a timestamp (ISO 8601, or integer epoch seconds/milliseconds, 1970..2261)"


def parse_timestamp(arr: pa.Array) -> Parsed:
    """Instants as int64 microseconds since the epoch, UTC. Naive values are UTC."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_string(t):
        s, null = _strings(arr)
        is_int = _np(pc.match_substring_regex(s, r"^\d{1,18}$"))
        ints = _np(pc.cast(pc.if_else(pa.array(is_int), s, "0"), pa.int64()))
        e_us, e_bad = epoch_to_us(ints)
        i_us, i_bad = _iso_to_us(s)
        us = np.where(is_int, e_us, i_us)
        bad = np.where(is_int, e_bad, i_bad) & ~null
        return Parsed(us, null, [(_TS_REASON, bad)])
    null = _np(arr.is_null())
    if pa.types.is_timestamp(t):
        raw = _np(pc.fill_null(arr.cast(pa.int64()), 0))
        scale = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}[t.unit]
        us = raw // 1000 if t.unit == "ns" else raw * scale  # ns: truncate to microseconds
    elif pa.types.is_date32(t):
        us = _np(pc.fill_null(arr.cast(pa.int32()), 0)).astype(np.int64) * US_PER_DAY
    elif pa.types.is_date64(t):
        us = _np(pc.fill_null(arr.cast(pa.int64()), 0)) * 1_000
    elif pa.types.is_integer(t):
        as_int = parse_int(arr)
        us, bad = epoch_to_us(as_int.values)
        return Parsed(us, null, [(_TS_REASON, (bad | as_int.bad[0][1]) & ~null)])
    else:
        return _wrong_type(arr, "timestamp")
    bad = ((us < MIN_US) | (us >= MAX_US)) & ~null
    return Parsed(np.where(bad, 0, us), null, [(_TS_REASON, bad)])


def parse_date(arr: pa.Array) -> Parsed:
    """Calendar dates as int32 days since the epoch: anything ``parse_timestamp`` reads,
    reduced to its UTC date."""
    p = parse_timestamp(arr)
    return Parsed((p.values // US_PER_DAY).astype(np.int32), p.null, p.bad)


def parse_tags(arr: pa.Array) -> Parsed:
    """Lists of positive int32 tag ids: parquet lists, or strings of ids separated by ``|``
    and/or whitespace. A missing cell is an empty list; ``values`` is a ``list<int32>`` array."""
    arr = _plain(arr)
    t = arr.type
    n = len(arr)
    if pa.types.is_string(t):
        s, null = _strings(arr)
        parts = pc.split_pattern_regex(s, r"[|\s]+")
        flat, parents = pc.list_flatten(parts), _np(pc.list_parent_indices(parts))
        keep = _np(pc.not_equal(flat, ""))
        flat, parents = flat.filter(pa.array(keep)), parents[keep]
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        null = _np(arr.is_null())
        flat, parents = pc.list_flatten(arr), _np(pc.list_parent_indices(arr))
    else:
        return _wrong_type(arr, "list of integers or a '|'-separated string")
    elems = parse_int(flat, 1, INT32_MAX)
    bad = np.zeros(n, bool)
    for _, mask in elems.bad:
        bad[parents[mask]] = True
    bad[parents[elems.null]] = True
    offsets = np.concatenate([[0], np.cumsum(np.bincount(parents, minlength=n))]).astype(np.int32)
    values = pa.ListArray.from_arrays(pa.array(offsets), pa.array(elems.values.astype(np.int32)))
    return Parsed(values, null, [(f"not a list of tag ids in 1..{INT32_MAX}", bad)])


def parse_choice(arr: pa.Array, choices: tuple[str, ...]) -> Parsed:
    """One of ``choices``, case-insensitive, surrounding whitespace ignored."""
    arr = _plain(arr)
    if not pa.types.is_string(arr.type):
        return _wrong_type(arr, "string")
    s, null = _strings(arr)
    s = pc.utf8_lower(s)
    bad = ~_np(pc.is_in(s, value_set=pa.array(choices))) & ~null
    return Parsed(s, null, [(f"not one of {', '.join(choices)}", bad)])


def parse_string(arr: pa.Array) -> Parsed:
    """Text as given, surrounding whitespace trimmed (IDs keep their leading zeros): strings, or
    integers written as their decimal text (a parquet Int64 column of string IDs)."""
    arr = _plain(arr)
    if pa.types.is_integer(arr.type):
        arr = arr.cast(pa.string())
    if not pa.types.is_string(arr.type):
        return _wrong_type(arr, "string")
    s, null = _strings(arr)
    return Parsed(s, null, [])


def parse_float(arr: pa.Array) -> Parsed:
    """Finite numbers: decimal strings, integer or float types."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_string(t):
        s, null = _strings(arr)
        ok = _np(pc.match_substring_regex(s, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")) & ~null
        values = _np(pc.cast(pc.if_else(pa.array(ok), s, "0"), pa.float64()))
    elif pa.types.is_integer(t) or pa.types.is_floating(t):
        null = _np(arr.is_null())
        values = _np(pc.fill_null(arr, 0)).astype(np.float64)
        ok = np.isfinite(values) | null
    else:
        return _wrong_type(arr, "number")
    return Parsed(values, null, [("not a finite number", ~ok & ~null)])


def parse_bool(arr: pa.Array) -> Parsed:
    """Booleans: true/false, 1/0, yes/no (any case), or a boolean column."""
    arr = _plain(arr)
    if pa.types.is_boolean(arr.type):
        null = _np(arr.is_null())
        return Parsed(_np(pc.fill_null(arr, False)).astype(bool), null, [])
    if pa.types.is_integer(arr.type):
        arr = arr.cast(pa.string())
    if not pa.types.is_string(arr.type):
        return _wrong_type(arr, "boolean")
    s, null = _strings(arr)
    s = _np(pc.utf8_lower(s)).astype(str)
    true, false = np.isin(s, ("true", "1", "yes")), np.isin(s, ("false", "0", "no"))
    return Parsed(true, null, [("not a boolean (true/false, 1/0, yes/no)", ~(true | false) & ~null)])


def parse_list(arr: pa.Array, element, element_type: pa.DataType, length: int | None = None) -> Parsed:
    """Lists: parquet lists, or strings of values separated by ``|`` (numbers also by
    whitespace); every element parsed by ``element``. ``length``: the exact length a vector
    must have (a missing vector is null); otherwise a missing cell is an empty list. ``values``
    is a ``list<element_type>`` array."""
    arr = _plain(arr)
    t = arr.type
    n = len(arr)
    if pa.types.is_string(t):
        s, null = _strings(arr)
        separator = r"\|" if element_type == pa.string() else r"[|\s]+"
        parts = pc.split_pattern_regex(s, separator)
        flat, parents = pc.list_flatten(parts), _np(pc.list_parent_indices(parts))
        keep = _np(pc.not_equal(pc.utf8_trim_whitespace(flat), ""))
        flat, parents = flat.filter(pa.array(keep)), parents[keep]
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        null = _np(arr.is_null())
        flat, parents = pc.list_flatten(arr), _np(pc.list_parent_indices(arr))
    else:
        return _wrong_type(arr, "a list or a '|'-separated string")
    elems = element(flat)
    bad = np.zeros(n, bool)
    for _, mask in elems.bad:
        bad[parents[mask]] = True
    bad[parents[elems.null]] = True
    counts = np.bincount(parents, minlength=n)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    if isinstance(elems.values, pa.Array):
        flat_values = elems.values
    else:  # unreadable elements are reported above; 0 keeps the cast below from failing on them
        unusable = elems.null.copy()
        for _, mask in elems.bad:
            unusable |= mask
        flat_values = pa.array(np.where(unusable, 0, elems.values))
    problems = [(f"not a list of {element_type}", bad)]
    if length is None:  # a list: missing = empty
        values = pa.ListArray.from_arrays(pa.array(offsets), flat_values.cast(element_type))
        return Parsed(values, np.zeros(n, bool), problems)
    values = pa.ListArray.from_arrays(pa.array(offsets), flat_values.cast(element_type), mask=pa.array(null))
    problems.append((f"not a list of exactly {length} values", (counts != length) & ~null & ~bad))
    return Parsed(values, null, problems)
