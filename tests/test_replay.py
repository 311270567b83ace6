"""The day-replay experiment, end to end at a tiny size through the real CLI.

One replay (2 seeds x 2 days, 4-hour steps) runs once for the module: `twotower replay` in a
subprocess with --readme, exactly as a user runs it. The tests then read what it wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twotower.core.config import load_settings
from twotower.core.errors import UserError
from twotower.research.replay.metrics import compare, recovery_hours
from twotower.research.replay.strategies import KEYS, ORACLE
from twotower.research.replay.tables import END, START, rewrite_block
from twotower.core.workspace import Workspace

pytestmark = pytest.mark.slow  # started first (conftest): a long file must not end the run alone

TWOTOWER = str(Path(sys.executable).with_name("twotower"))
TINY = ["--days", "2", "--seeds", "2", "--users", "200", "--items", "150", "--step-minutes", "240"]
README = "# A project\n\nSome text.\n\n" + START + "\nold table\n" + END + "\n\nAfter.\n"


def _replay(root: Path, readme: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TWOTOWER, "--workspace", str(root / "ws"), "replay", *TINY, "--readme", str(readme), *extra],
        capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    readme = root / "README.md"
    readme.write_text(README)
    proc = _replay(root, readme)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ws = Workspace(root / "ws")
    results = json.loads((ws.root / "replay" / "results.json").read_text())
    return root, ws, readme, results, proc.stdout


def test_results_have_every_strategy_with_real_numbers(replayed):
    _, _, _, results, _ = replayed
    assert [s["key"] for s in results["strategies"]] == list(KEYS)
    assert results["config"]["seeds"] == [0, 1] and results["measured_clicks"] > 1000
    for key in (*KEYS, ORACLE):
        for k in (50, 100):
            s = results["summary"][key][f"recall@{k}"]
            assert len(s["per_seed"]) == 2
            assert all(0.0 <= v <= 1.0 for v in s["per_seed"]), (key, k, s)
            assert s["min"] <= s["mean"] <= s["max"]
        assert results["summary"][key]["recall@50"]["mean"] <= results["summary"][key]["recall@100"]["mean"]
    for key in KEYS:  # the oracle knows the true taste: on average no strategy beats it
        assert results["summary"][ORACLE]["recall@100"]["mean"] >= results["summary"][key]["recall@100"]["mean"]
    # training through the day changes the channel: no-update differs from full + incremental
    summary = results["summary"]
    assert summary["no_update"]["recall@100"]["per_seed"] != summary["full_incremental"]["recall@100"]["per_seed"]
    assert len(results["hourly"]["hour"]) == 24
    assert {c["id"] for c in results["claims"]} == {
        "full_plus_incremental_beats_incremental_only", "shuffled_beats_time_ordered", "incremental_follows_new_interests"
    }
    verdicts = {"holds", "reversed", "partly holds", "does not hold", "unclear"}
    assert all(c["verdict"] in verdicts for c in results["claims"])
    ni = results["new_interest"]
    assert sum(ni["clicks"]) > 0 and all(len(ni[k]["recovery_hours"]) == 2 for k in KEYS)


def test_first_step_of_the_first_day_is_the_same_model_for_all_but_time_ordered(replayed):
    """Wiring check: at 00:00 of the first measured day nothing has trained since the day-1 full
    model, so every strategy except the time-ordered lineage must rank every click identically
    (the chains' new user rows are copies of the OOV rows the full model serves them with)."""
    _, ws, _, _, _ = replayed
    clicks = pd.read_parquet(ws.root / "replay" / "seed-0" / "clicks.parquet")
    first = clicks.loc[clicks["step_start_us"] == clicks["step_start_us"].min()]
    assert len(first) > 0
    for key in ("full_only", "incremental_only", "no_update"):
        np.testing.assert_array_equal(first[f"rank_{key}"], first["rank_full_incremental"], err_msg=key)
    later = clicks.loc[clicks["step_start_us"] > clicks["step_start_us"].min()]
    assert (later["rank_full_incremental"] != later["rank_full_only"]).any()  # the chain has trained by then


def test_oracle_ranks_agree_with_the_simulators_oracle(replayed):
    from twotower.research.replay.channel import oracle_ranks
    from twotower.research.replay.world import load_world, rows

    _, ws, _, _, _ = replayed
    world_ws = Workspace(ws.root / "replay" / "seed-1")
    world = load_world(load_settings(workspace=world_ws.root), world_ws)
    day = world.days[1]
    sample = rows(day.features, slice(0, 400))
    ranks = oracle_ranks(world.truth, sample)
    for k in (50, 100):
        top = world.truth.oracle_topk(sample["user_id"], sample["event_timestamp"], k)
        np.testing.assert_array_equal((top == sample["item_id"][:, None]).any(axis=1), ranks < k)


def test_readme_block_and_markdown_come_from_the_run(replayed):
    _, ws, readme, results, stdout = replayed
    text = readme.read_text()
    assert text.startswith("# A project\n\nSome text.\n\n" + START) and text.endswith(END + "\n\nAfter.\n")
    assert "old table" not in text
    assert results["command"] in text and "--days 2 --seeds 2" in results["command"]
    for s in results["strategies"]:
        assert f"| {s['label']} |" in text
    assert (ws.root / "replay" / "results.md").read_text() in text
    assert "| full + incremental |" in stdout
    page = (ws.reports_dir / "index.html").read_text()
    assert "Day replay" in page and page.count("<svg") >= 4


def test_rerun_with_unchanged_settings_reuses_every_seed(replayed):
    root, _, readme, results, _ = replayed
    proc = _replay(root, readme)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (proc.stdout + proc.stderr).count("reusing") == 2  # the log (stderr)
    again = json.loads((root / "ws" / "replay" / "results.json").read_text())
    assert again["summary"] == results["summary"] and again["claims"] == results["claims"]


def test_bad_options_are_named_and_write_nothing(replayed, tmp_path):
    root, _, readme, _, _ = replayed
    before = readme.read_text()
    proc = subprocess.run([TWOTOWER, "--workspace", str(tmp_path / "ws"), "replay", "--step-minutes", "7"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "--step-minutes" in proc.stderr and "do not divide a day" in proc.stderr
    assert not (tmp_path / "ws" / "replay").exists()
    plain = tmp_path / "NO_MARKERS.md"
    plain.write_text("no markers here\n")
    with pytest.raises(UserError, match="replay:start"):
        rewrite_block(plain, "x")
    assert plain.read_text() == "no markers here\n" and readme.read_text() == before


def test_recovery_hours_needs_two_hours_in_a_row():
    ratio = pd.Series([0.1, 0.3, 0.1, 0.3, 0.4, 0.5], index=range(6))
    assert recovery_hours(ratio, 0.25) == 3.0
    assert recovery_hours(ratio, 0.6) is None
    assert recovery_hours(pd.Series([0.1, 0.3], index=[0, 1]), 0.25) == 1.0  # the last hour of the day counts


def test_compare_calls_a_difference_clear_only_against_seed_noise():
    a = pd.Series([0.30, 0.31, 0.32])
    assert compare(a, a - 0.02)["verdict"] == "holds"
    assert compare(a - 0.02, a)["verdict"] == "reversed"
    assert compare(a, pd.Series([0.29, 0.33, 0.31]))["verdict"] == "unclear"  # signs disagree
    assert compare(a.iloc[:1], a.iloc[:1] - 0.1)["verdict"] == "unclear"  # one seed: no noise estimate
