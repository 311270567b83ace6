"""Read one user file (CSV or parquet, by extension) into a raw ``pa.Table``.

CSV columns are all read as strings: type guessing would turn an ID column with one typo into
floats or text and lose the row of the typo; the column parsers (``ingest_columns``) convert
and report per row instead. Any failure is a ``DataError`` naming the file and the option.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from twotower.core.errors import DataError

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_input(path: Path, option: str) -> pa.Table:
    """A user file as a raw table: CSV columns all as strings (no type guessing), parquet as is."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path} ({option}): unsupported file type '{path.suffix or '(none)'}'; use .csv or .parquet")
    if not path.is_file():
        raise DataError(f"{path} ({option}): no such file")
    try:
        if kind == "parquet":
            return pq.read_table(path)
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = [h.strip() for h in next(csv.reader(fh), [])]
        if not header:
            raise DataError(f"{path} ({option}): empty file, expected a header row")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise DataError(f"{path}: column '{dupes[0]}' appears {header.count(dupes[0])} times in the header")
        return pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=header, skip_rows=1),
            convert_options=pcsv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, UnicodeDecodeError, csv.Error, OSError) as exc:
        ragged = _ragged_rows(path) if kind == "csv" else ""
        raise DataError(f"{path} ({option}): cannot read {kind}: {ragged or exc}") from None


def _ragged_rows(path: Path, limit: int = 5) -> str:
    """Which data rows have a different number of fields than the header (error path only:
    pyarrow's parse error does not say where)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            width = len(next(reader))
            bad = [(i, len(r)) for i, r in enumerate(reader, 1) if r and len(r) != width]
    except (UnicodeDecodeError, csv.Error):
        return ""
    if not bad:
        return ""
    shown = ", ".join(f"{i} ({n} fields)" for i, n in bad[:limit])
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"the header has {width} fields but {'row' if len(bad) == 1 else 'rows'} {shown}{more}"
