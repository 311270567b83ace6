"""The replay's results as markdown: a table per strategy and the claims' verdicts.

``rewrite_block`` replaces what lies between ``<!-- replay:start -->`` and
``<!-- replay:end -->`` in a file (the README), so the published table is always the one the
command produced, never typed by hand.
"""

from __future__ import annotations

from pathlib import Path

from twotower.core.errors import UserError
from twotower.research.replay.claims import verdict_text
from twotower.core.files import atomic_write_bytes

START, END = "<!-- replay:start -->", "<!-- replay:end -->"


def _pm(s: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    if not s or s.get("mean") is None:
        return "-"
    return f"{s['mean'] * scale:.{digits}f} ± {s['std'] * scale:.{digits}f}"


def _hours(values: list) -> str:
    """Hours to recover over seeds: the mean (range) if every seed recovered, else how many did."""
    got = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(got) < len(values):
        return f"not within the day ({len(got)}/{len(values)} seeds)" if got else "not within the day"
    lo, hi = min(got), max(got)
    mean = sum(got) / len(got)
    return f"{mean:.1f} ({lo:.0f}–{hi:.0f})" if hi > lo else f"{mean:.0f}"


def results_markdown(results: dict) -> str:
    cfg, ks = results["config"], results["config"]["ks"]
    ni = results["new_interest"]
    head = ["strategy", *[f"recall@{k} (%)" for k in ks], f"new-interest recall@{ni['k']} after ≥1 h (%)",
            f"hours to recover (≥{ni['share']:.0%} of oracle)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in results["strategies"]:
        key = s["key"]
        row = [s["label"], *[_pm(results["summary"][key][f"recall@{k}"]) for k in ks],
               _pm(ni[key]["recall_after_1h"]), _hours(ni[key]["recovery_hours"])]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    oracle = results["summary"]["oracle"]
    cells = ["*oracle (true affinity)*", *[_pm(oracle[f"recall@{k}"]) for k in ks], "-", "-"]
    lines.append("| " + " | ".join(cells) + " |")
    seeds = cfg["seeds"]
    out = [
        f"Mean ± std over {len(seeds)} seeds (seeds {', '.join(map(str, seeds))}); each seed is its own simulated "
        f"world of {cfg['users']:,} users and {cfg['items']:,} items over {cfg['days']} days (day 1 trains the first "
        f"model; days 2–{cfg['days']} are measured, {results['measured_clicks']:,} clicks in all). Recall@K: share of "
        f"next-step clicks whose item the channel ranks in its top K (exact search over the items existing at the "
        f"click, {cfg['step_minutes']}-minute steps).",
        "",
        *lines,
        "",
        f"New-interest clicks: clicks of a user in a category the user acquired the same day (the simulator "
        f"plants one for {cfg_share(results)} of the users each morning, 06:00–11:00), made ≥1 h after acquiring "
        f"it. *Hours to recover*: hours after acquiring the interest until the strategy's recall@{ni['k']} of those "
        f"clicks reaches {ni['share']:.0%} of the oracle's recall of the same clicks, two hours in a row; mean "
        f"(min–max) over seeds. Differences below are paired (same world, same clicks) and called clear when every "
        f"seed agrees and the mean exceeds two standard errors.",
        "",
        "| claim of the seed | difference (paired over seeds, points) | verdict |",
        "|---|---|---|",
    ]
    for c in results["claims"]:
        diffs = "; ".join(
            f"{name}: {v['mean'] * 100:+.1f} ± {v['std'] * 100:.1f} ({_seed_diffs(v)})" for name, v in c["by_k"].items()
        )
        which = f"{_label(results, c['a'])} vs {_label(results, c['b'])}"
        which += ", new-interest clicks" if c["clicks"] == "new_interest" else ""
        out.append(f"| {c['claim']} ({which}) | {diffs} | **{verdict_text(c['verdict'])}** |")
    return "\n".join(out) + "\n"


def cfg_share(results: dict) -> str:
    return f"{results['config']['simulator'].get('new_interest_share', 0):.0%}"


def _seed_diffs(v: dict) -> str:
    return "per seed " + ", ".join(f"{x * 100:+.1f}" for x in v["per_seed"])


def _label(results: dict, key: str) -> str:
    return next(s["label"] for s in results["strategies"] if s["key"] == key)


def readme_block(results: dict) -> str:
    strategies = "\n".join(f"- **{s['label']}**: {s['description']}." for s in results["strategies"])
    return (
        f"{START}\n"
        "## Day replay: do the seed's update strategies pay off?\n\n"
        "`twotower replay` (`twotower/research/replay/`) simulates worlds and replays their days step by step on a "
        f"simulated clock ({results['config']['step_minutes']}-minute steps), in-process, for five strategies trained "
        "on identical data, and measures each strategy's channel on the clicks of the next step against the "
        "simulator's oracle:\n\n"
        f"{strategies}\n\n"
        "Design, definitions, interpretation and sensitivity checks: [docs/replay.md](docs/replay.md).\n\n"
        f"Reproduce with `{results['command']}` ({results['seconds']['replay'] / 60:.0f} min on "
        f"{results['machine']['cpus']} shared cores; results in `<workspace>/replay/results.json`, plots in "
        f"`<workspace>/reports/`).\n\n"
        f"{results_markdown(results)}"
        f"{END}"
    )


def rewrite_block(path: Path, block: str) -> None:
    """Replace the marked block of ``path`` (atomically); the markers must be there, once."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--readme {path}: no such file")
    text = path.read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise UserError(f"--readme {path}: needs exactly one '{START}' followed by one '{END}' line")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    atomic_write_bytes(path, (head + block + tail).encode())
