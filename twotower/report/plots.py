"""The report's charts: matplotlib figures rendered to inline SVG strings.

``matplotlib.figure.Figure`` is used directly (never pyplot), so rendering needs no display,
selects no global backend and leaves the calling process's matplotlib state alone. Each
function takes plain dicts (what ``collect`` read) and returns an ``<svg>`` string, or None
when there is nothing to draw.
"""

from __future__ import annotations

import io
import re

import numpy as np
from matplotlib.figure import Figure

COLORS = {"full_incremental": "#1b7837", "full_only": "#2166ac", "incremental_only": "#e08214",
          "time_ordered_full": "#8073ac", "no_update": "#7f7f7f", "oracle": "#000000"}  # fmt: skip


def _figure(width: float = 7.5, height: float = 3.2, cols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, cols, squeeze=False)[0].tolist()
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def to_svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inline in HTML


def _none(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def validation(summaries: list[dict]) -> str | None:
    days = [s["day"] for s in summaries if isinstance(s.get("facts"), dict) and "events" in s["facts"]]
    if not days:
        return None
    rows = [s for s in summaries if s["day"] in days]
    fig, (ax, ax2) = _figure(cols=2)
    events = [s["facts"].get("events", 0) for s in rows]
    colors = ["#1b7837" if s.get("success") else "#b2182b" for s in rows]
    ax.bar(days, events, color=colors)
    ax.set_title("events per day (green = gate passed, red = failed)", fontsize=9)
    rate = [s["facts"].get("clicks", 0) / s["facts"]["impressions"] if s["facts"].get("impressions") else np.nan
            for s in rows]  # fmt: skip
    ax2.plot(days, rate, marker="o", color="#2166ac")
    ax2.set_title("click rate (clicks / impressions)", fontsize=9)
    for a in (ax, ax2):
        a.tick_params(axis="x", labelrotation=30, labelsize=8)
    return to_svg(fig)


def generations(manifests: list[dict]) -> str | None:
    if not manifests:
        return None
    ids = [m["id"].split("-", 1)[0] + "\n" + str(m["day"]) for m in manifests]
    metrics = [m.get("metrics", {}) for m in manifests]
    fig, (ax, ax2) = _figure(cols=2)
    ax.plot(ids, _none([m.get("train_loss") for m in metrics]), marker="o", color="#b2182b")
    ax.set_title("training loss (mean over the full update's epoch)", fontsize=9)
    for k, style in ((10, ":"), (50, "--"), (100, "-")):
        ax2.plot(ids, _none([m.get(f"recall@{k}") for m in metrics]), style, marker="o", label=f"recall@{k}")
    parent = _none([m.get("parent_recall@100") for m in metrics])
    if not np.isnan(parent).all():
        ax2.plot(ids, parent, "x", color="#7f7f7f", label="served parent, recall@100")
    ax2.set_title("held-out recall (exact) per generation", fontsize=9)
    ax2.legend(fontsize=7)
    for a in (ax, ax2):
        a.tick_params(axis="x", labelsize=7)
    return to_svg(fig)


def _strategy_lines(ax, x, block: dict, keys, k: int, labels: dict, band: bool = True) -> None:
    for key in keys:
        series = block[key][f"recall@{k}"]
        mean, std = _none(series["mean"]), _none(series["std"])
        style = "--" if key == "oracle" else "-"
        ax.plot(x, mean, style, color=COLORS.get(key), label=labels.get(key, key), linewidth=1.6)
        if band and key != "oracle":
            ax.fill_between(x, mean - std, mean + std, color=COLORS.get(key), alpha=0.15, linewidth=0)


def replay_hourly(replay: dict, k: int) -> str:
    labels = {s["key"]: s["label"] for s in replay["strategies"]} | {"oracle": "oracle"}
    keys = [*labels]
    fig, (ax,) = _figure(height=3.6)
    _strategy_lines(ax, replay["hourly"]["hour"], replay["hourly"], keys, k, labels)
    ax.set_xlabel("hour of day (UTC) of the measured clicks")
    ax.set_ylabel(f"next-hour recall@{k}")
    ax.set_xticks(range(0, 24, 2))
    ax.legend(fontsize=7, ncols=3)
    ax.set_title(f"recall@{k} by hour of day (mean over seeds and measured days; band = ±1 std over seeds)", fontsize=9)
    return to_svg(fig)


def replay_timeline(replay: dict, k: int) -> str:
    labels = {s["key"]: s["label"] for s in replay["strategies"]} | {"oracle": "oracle"}
    steps = replay["timeline"]["step"]
    x = np.arange(len(steps))
    fig, (ax,) = _figure(width=9, height=3.4)
    _strategy_lines(ax, x, replay["timeline"], [*labels], k, labels, band=False)
    midnights = [i for i, s in enumerate(steps) if s.endswith(" 00h")]
    for i in midnights:
        ax.axvline(i, color="#999999", linewidth=0.8, linestyle=":")
    ax.set_xticks(midnights, [steps[i].split()[0] for i in midnights], fontsize=8)
    ax.set_ylabel(f"recall@{k}")
    ax.set_title(f"recall@{k} step by step over the measured days (dotted: midnight, the full update)", fontsize=9)
    ax.legend(fontsize=7, ncols=3)
    return to_svg(fig)


def replay_summary(replay: dict) -> str:
    ks = replay["config"]["ks"]
    keys = [s["key"] for s in replay["strategies"]] + ["oracle"]
    labels = [s["label"] for s in replay["strategies"]] + ["oracle"]
    fig, (ax,) = _figure(height=3.2)
    width = 0.8 / len(ks)
    for j, k in enumerate(ks):
        means = [replay["summary"][key][f"recall@{k}"]["mean"] for key in keys]
        stds = [replay["summary"][key][f"recall@{k}"]["std"] for key in keys]
        x = np.arange(len(keys)) + (j - (len(ks) - 1) / 2) * width
        ax.bar(x, means, width, yerr=stds, capsize=3, label=f"recall@{k}",
               color=[COLORS.get(key) for key in keys], alpha=0.55 + 0.4 * j / max(len(ks) - 1, 1))  # fmt: skip
    ax.set_xticks(np.arange(len(keys)), labels, fontsize=8)
    ax.set_title("recall over all measured clicks (bars: mean over seeds, whiskers: ±1 std; "
                 + " / ".join(f"recall@{k}" for k in ks) + " left to right)", fontsize=9)  # fmt: skip
    return to_svg(fig)


def new_interest(replay: dict) -> str:
    ni = replay["new_interest"]
    hours = ni["hours"]
    fig, (ax,) = _figure(height=3.4)
    for s in replay["strategies"]:
        ax.plot(hours, _none(ni[s["key"]]["curve"]), marker=".", color=COLORS.get(s["key"]), label=s["label"])
    oracle = _none(ni["oracle"]["curve"])
    ax.plot(hours, oracle, "--", color="black", label="oracle")
    ax.plot(hours, oracle * ni["share"], ":", color="black", label=f"{ni['share']:.0%} of oracle (recovered)")
    ax.set_xlabel("hours since the user acquired the new interest")
    ax.set_ylabel(f"recall@{ni['k']} of new-interest clicks")
    ax.set_title("following a new interest within the day (mean over seeds)", fontsize=9)
    ax.legend(fontsize=7, ncols=2)
    return to_svg(fig)


def freshness(buckets: dict[str, tuple[list[str], list[int]]]) -> str | None:
    if not buckets:
        return None
    fig, axes = _figure(cols=len(buckets))
    for ax, (kind, (labels, counts)) in zip(axes, buckets.items()):
        ax.bar(range(len(counts)), counts, color="#2166ac")
        ax.set_xticks(range(len(counts)), labels, rotation=60, fontsize=7)
        ax.set_title(re.sub(r"_seconds$", "", kind).replace("_", " ") + " (users pushed)", fontsize=9)
    return to_svg(fig)


def _stage_bars(ax, stages: dict[str, dict], title: str) -> None:
    """p50 / p90 / p99 bars (ms) of each stage side by side."""
    names = list(stages)
    for j, p in enumerate(("p50_ms", "p90_ms", "p99_ms")):
        ax.bar(np.arange(len(names)) + (j - 1) * 0.27, [stages[n].get(p, np.nan) for n in names], 0.27, label=p[:-3])
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("ms")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def serving(stages: dict[str, dict], runs: dict[str, list[dict]]) -> str | None:
    if not stages and not runs:
        return None
    fig, axes = _figure(cols=2 if stages and runs else 1)
    ax = axes[0]
    if stages:
        _stage_bars(ax, stages, "in-process recall latency by stage")
        ax = axes[-1]
    if runs:
        for name, rs in runs.items():
            c = [r["concurrency"] for r in rs]
            ax.plot(c, [r.get("req_per_s") for r in rs], marker="o", label=f"{name}: req/s")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("requests / s")
        twin = ax.twinx()
        for name, rs in runs.items():
            concurrency, p99 = [r["concurrency"] for r in rs], [r.get("p99_ms") for r in rs]
            twin.plot(concurrency, p99, "--", marker="x", label=f"{name}: p99")
        twin.set_ylabel("p99 ms (dashed)")
        ax.set_title("HTTP /recall throughput and p99", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    return to_svg(fig)


def served_latency(requests: tuple[list[str], list[int]] | None, stages: dict[str, dict]) -> str | None:
    """The workspace's own servers: requests per latency bucket, and each stage's p50/p90/p99."""
    if not requests and not stages:
        return None
    fig, axes = _figure(cols=2 if requests and stages else 1)
    if requests:
        labels, counts = requests
        ax = axes[0]
        ax.bar(range(len(counts)), counts, color="#2166ac")
        ax.set_xticks(range(len(counts)), labels, rotation=60, fontsize=7)
        ax.set_title("/recall requests by server-side latency", fontsize=9)
    if stages:
        _stage_bars(axes[-1], stages, "recall stages (from the histograms)")
    return to_svg(fig)
