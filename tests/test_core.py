"""The core layer's helpers: time in microseconds, the atomic writer, the file lock, waiting for a server."""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twotower.core.files import Timeout, atomic_path, atomic_write_bytes, file_lock
from twotower.core.processes import http_ok, wait_ready
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


def _import_in_subprocess(code: str, level: str, path: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": level}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_tensorflows_import_time_lines_are_hidden_at_log_level_3(tmp_path):
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os\nos.write(2, b'I0000 cudart_stub.cc:31] noise\\n')\nVALUE = 7\n")
    quiet = _import_in_subprocess("import twotower, tensorflow; print(tensorflow.VALUE)", "3", tmp_path)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "7\n", "")
    loud = _import_in_subprocess("import twotower, tensorflow", "0", tmp_path)  # -v
    assert "cudart_stub" in loud.stderr


def test_a_failing_tensorflow_import_still_shows_what_it_printed(tmp_path):
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os\nos.write(2, b'libcudart missing\\n')\nraise ImportError('broken build')\n")
    run = _import_in_subprocess("import twotower, tensorflow", "3", tmp_path)
    assert run.returncode == 1
    assert "libcudart missing" in run.stderr and "broken build" in run.stderr


def test_the_real_tensorflow_imports_silently_at_log_level_3():
    run = _import_in_subprocess("import twotower, tensorflow as tf; print(int(tf.constant(2) * 3))", "3")
    assert (run.returncode, run.stdout, run.stderr) == (0, "6\n", "")


def test_the_request_paths_encoder_equals_the_batch_one():
    """``encode`` takes a per-value path for a few rows (serving) and an array path for many
    (training): the same keys either way, missing values and truncation included."""
    from twotower.core.encode import encode
    from twotower.core.features import Feature

    cases = [
        (Feature("c", "v", "categorical", "Int32", "int", buckets=8), [3, None, -7, 2**40]),
        (Feature("s", "v", "categorical", "String", "string", buckets=8), ["007", None, "ü", "7"]),
        (Feature("b", "v", "categorical", "Bool", "bool", buckets=2), [True, None, False, True]),
        (Feature("m", "v", "multi", "Array(Int64)", "int", buckets=8, max_len=3), [[1, 2], None, [], [4, 5, 6, 7]]),
        (Feature("t", "v", "multi", "Array(String)", "string", buckets=8, max_len=2), [["a", "b", "c"], None, ["b"], []]),
    ]
    for f, few in cases:
        many = few * 20  # 80 rows: the array path
        np_few, np_many = encode(f, few), encode(f, many)
        np.testing.assert_array_equal(np_few, np_many[: len(few)], err_msg=f.name)


FIELD_WITH_A_NUMBER_AS_NAME = """
import twotower, feast
from feast import Field
from feast.types import Int64
try:
    Field(name=5, dtype=Int64)
    print("accepted")
except Exception as e:
    print(type(e).__name__)
"""


def test_feast_imports_without_typeguard_instrumentation_unless_asked():
    """The platform's processes skip Feast's typeguard decorators (5 s of a 7 s import, as under
    ``python -O``); with TWOTOWER_FEAST_TYPECHECKS=1 - set for the child that runs the user's
    declarations - a wrong argument fails as under Feast's own CLI."""
    fast = subprocess.run([sys.executable, "-c", FIELD_WITH_A_NUMBER_AS_NAME], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TWOTOWER_FEAST_TYPECHECKS": "0"})  # fmt: skip
    checked = subprocess.run([sys.executable, "-c", FIELD_WITH_A_NUMBER_AS_NAME], capture_output=True, text=True,
                             timeout=300, env={**os.environ, "TWOTOWER_FEAST_TYPECHECKS": "1"})  # fmt: skip
    assert fast.stdout.split() == ["accepted"], fast.stderr
    assert checked.stdout.split() == ["TypeCheckError"], checked.stderr
    import typeguard

    @typeguard.typechecked
    def others_keep_theirs(x: int) -> int:  # only Feast's own classes and functions pass through
        return x

    with pytest.raises(typeguard.TypeCheckError):
        others_keep_theirs("x")


def test_what_a_dependency_prints_becomes_its_debug_log(capsys, caplog):
    from twotower.core.logs import printed_as_log

    with caplog.at_level(logging.DEBUG, logger="feast"), printed_as_log("feast"):
        print("\x1b[1mMaterializing\x1b[0m 1 feature views")
        print("")
    assert capsys.readouterr().out == ""
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("feast", logging.DEBUG, "\x1b[1mMaterializing\x1b[0m 1 feature views")
    ]


def test_waiting_for_a_server_ends_when_it_answers_exits_or_stays_silent(tmp_path):
    port_file = tmp_path / "port"
    server = subprocess.Popen([sys.executable, "-c", (
        "import http.server, pathlib, time; time.sleep(0.5)\n"
        "s = http.server.HTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\n"
        f"pathlib.Path({str(port_file)!r}).write_text(str(s.server_port)); s.serve_forever()")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_ready(server, lambda: http_ok(f"http://127.0.0.1:{port_file.read_text()}/")(), "the file server", 30)
        assert server.poll() is None
    finally:
        server.kill()
        server.wait()

    log = tmp_path / "log"
    log.write_text("the last words of a server\n")
    dying = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match=r"a dying server exited with 3; its log .*\n.*the last words"):
        wait_ready(dying, lambda: False, "a dying server", 30, log=log)
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(RuntimeError, match="a silent server did not answer within 0.3 s"):
            wait_ready(silent, http_ok("http://127.0.0.1:9/"), "a silent server", 0.3, interval=0.05)
    finally:
        silent.kill()
        silent.wait()
