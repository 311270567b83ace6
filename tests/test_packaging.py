"""A non-editable install works: the wheel of this checkout, installed into a fresh virtualenv,
runs ``twotower demo`` from an empty directory (nothing read from the source tree).

The fresh environment gets the project only from the wheel; its dependencies (TensorFlow, Feast,
...) are this environment's, reached through a ``.pth`` line so nothing is downloaded. A ``.pth``
line adds a directory without processing the ``.pth`` files inside it, so this environment's
editable install of the project stays invisible there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMALL_WORLD = {"TWOTOWER_SIMULATOR__USERS": "200", "TWOTOWER_SIMULATOR__ITEMS": "120", "TWOTOWER_SIMULATOR__DAYS": "2"}


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)
    assert out.returncode == 0, f"{cmd}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_venv_runs_the_demo_from_an_empty_directory(tmp_path):
    # Built from a copy of the sources: setuptools' build/ of the checkout may hold stale modules.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "workspace", "results", "__pycache__", ".pytest_cache"))  # fmt: skip
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)])
    (wheel,) = dist.glob("twotower-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith("data/share/twotower/feature_repo/feature_views.py") for n in names), "feature repo not shipped"
    assert not any(n.startswith(("tests/", "bench/")) for n in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)])
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # `feast apply` runs Feast's own CLI beside the interpreter, as pip would have installed it.
    feast = env_dir / "bin" / "feast"
    feast.write_text(f"#!{python}\nimport sys\nfrom feast.cli.cli import cli\nsys.exit(cli())\n")
    feast.chmod(0o755)

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWOTOWER_", "PYTHON"))} | SMALL_WORLD
    where = _run([str(python), "-c", "import twotower.feature_store as f; print(f.__file__); print(f.FEATURE_REPO)"],
                 cwd=empty, env=env).stdout.split()  # fmt: skip
    assert all(Path(p).is_relative_to(env_dir) for p in where), where  # the installed copy, not the checkout

    demo = _run([str(env_dir / "bin" / "twotower"), "--workspace", "ws", "demo"], cwd=empty, env=env)
    assert "serving g00002" in demo.stdout, demo.stdout[-3000:]
    assert "path embedding" in demo.stdout, demo.stdout[-3000:]
    assert (empty / "ws" / "generations" / "CURRENT").is_file()
