"""README's quick start for your own data, run as a user would: every ``$`` line of its console
block in a shell, in an empty directory, and every output line it shows checked against what
the command really printed (``…`` stands for what varies: seconds, paths, scores).

A command ending in ``&`` is a server: it is started in the background and the next line runs
once its ``/health`` answers. The README's port (8765) becomes a free one here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from serving_support import free_port
from twotower.core.processes import http_ok, wait_ready

pytestmark = pytest.mark.slow  # started first (conftest): a long file must not end the run alone

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- quickstart: own data -->", "<!-- /quickstart -->"
BIN = str(Path(sys.executable).parent)
README_PORT = "8765"


def steps(text: str) -> list[tuple[str, list[str]]]:
    """(command, output lines shown under it) for each ``$`` line of the marked console block."""
    block = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    lines = block.split("```console\n", 1)[1].split("```", 1)[0].splitlines()
    out: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif line.strip():
            out[-1][1].append(line)
    return out


def pattern(shown: str) -> re.Pattern:
    """A shown line as a regex: literal text, ``…`` matching anything."""
    return re.compile(".*".join(re.escape(part) for part in shown.rstrip().split("…")))


def check_output(command: str, shown: list[str], printed: str) -> None:
    """Each shown line matches a printed line, in order (lines may be left out in between)."""
    actual = [line.rstrip() for line in printed.splitlines()]
    at = 0
    for line in shown:
        if line.strip() == "…":
            continue
        want = pattern(line)
        while at < len(actual) and not want.fullmatch(actual[at]):
            at += 1
        assert at < len(actual), f"`{command}`: README shows {line!r}, not in what it printed:\n{printed}"
        at += 1


def test_the_readme_quick_start_for_your_own_data_runs_as_shown(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTOWER_")}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    server = None
    port = str(free_port())
    try:
        for command, shown in steps(README.read_text()):
            command = command.replace(README_PORT, port)
            if command.rstrip().endswith("&"):
                server = subprocess.Popen(["bash", "-c", f"exec {command.rstrip()[:-1]}"], cwd=tmp_path, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
                wait_ready(server, http_ok(f"http://127.0.0.1:{port}/health"), f"`{command}`", 120)
                continue
            proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=900)  # fmt: skip
            assert proc.returncode == 0, f"`{command}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            check_output(command, shown, proc.stdout + proc.stderr)
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    assert server is not None, "the quick start starts a server"
