"""The core layer's helpers: time in microseconds, the atomic writer, the file lock."""

from __future__ import annotations

import multiprocessing
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from twotower.core.files import Timeout, atomic_path, atomic_write_bytes, file_lock
from twotower.core.timeutil import datetime_us, day_start_us, to_us

T0 = 1793491201500000  # 2026-11-01 00:00:01.5 UTC


def test_every_timestamp_notation_gives_the_same_microseconds():
    naive = pd.Series(pd.to_datetime(["2026-11-01 00:00:01.5"]))
    for series in (naive, naive.dt.tz_localize("UTC"), naive.dt.as_unit("ms"),
                   naive.dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo")):  # fmt: skip
        assert to_us(series).tolist() == [T0]
    assert datetime_us(pd.Timestamp("2026-11-01 01:00:01.5", tz="Europe/Paris")) == T0
    assert datetime_us(datetime(2026, 11, 1, 0, 0, 1, 500000, tzinfo=timezone.utc)) == T0
    assert day_start_us(date(2026, 11, 1)) == T0 - 1_500_000
    with pytest.raises(TypeError, match="expected timestamps"):
        to_us(pd.Series([1, 2]))


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a" / "x.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("died mid-write")
    assert target.read_bytes() == b"old" and [p.name for p in target.parent.iterdir()] == ["x.bin"]
    saved = tmp_path / "a" / "v.parquet"
    with atomic_path(saved) as tmp:
        assert tmp.name.startswith(".") and tmp.suffix == ".tmp"  # no reader's glob matches it
        pd.DataFrame({"v": [0, 1, 2]}).to_parquet(tmp)  # a writer that takes a path
    assert pd.read_parquet(saved)["v"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in target.parent.iterdir()) == ["v.parquet", "x.bin"]


def _hold(path: str, held, release) -> None:
    with file_lock(Path(path)):
        held.set()
        release.wait(30)


def test_the_file_lock_excludes_another_process(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(tmp_path / "x.lock"), held, release))
    proc.start()
    try:
        assert held.wait(60)
        with pytest.raises(Timeout):
            file_lock(tmp_path / "x.lock", wait=False).acquire()
    finally:
        release.set()
        proc.join(30)
    with file_lock(tmp_path / "x.lock", wait=False):
        pass  # free again once the holder is gone
