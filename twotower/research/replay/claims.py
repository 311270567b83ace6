"""The seed's three claims about keeping a two-tower model fresh, checked on replay numbers.

Each claim is a paired comparison over seeds (``metrics.compare``): the same worlds, the same
clicks, two strategies. Pure: takes the per-click table, returns plain dicts.
"""

from __future__ import annotations

import pandas as pd

from twotower.research.replay.metrics import compare, new_interest_frame, recall_by_seed

CLAIMS = (
    {
        "id": "full_plus_incremental_beats_incremental_only",
        "claim": "full + incremental beats incremental only (an hour of data is biased; time-ordered "
        "training is worse than shuffled)",
        "a": "full_incremental", "b": "incremental_only", "clicks": "all",
    },
    {
        "id": "shuffled_beats_time_ordered",
        "claim": "full training on shuffled data beats the same training on the same data in time order",
        "a": "full_only", "b": "time_ordered_full", "clicks": "all",
    },
    {
        "id": "incremental_follows_new_interests",
        "claim": "incremental updates let the channel follow a user's new interest within the day",
        "a": "full_incremental", "b": "full_only", "clicks": "new_interest",
    },
)  # fmt: skip


VERDICTS = {
    "holds": "holds",
    "reversed": "does not hold: the opposite is clear",
    "partly holds": "holds for some K only",
    "does not hold": "does not hold",
    "unclear": "unclear (within seed noise)",
}


def verdict_text(verdict: str) -> str:
    return VERDICTS.get(verdict, verdict)


def _overall(verdicts: list[str]) -> str:
    if all(v == "holds" for v in verdicts):
        return "holds"
    if all(v == "reversed" for v in verdicts):
        return "reversed"
    if any(v == "holds" for v in verdicts) and not any(v == "reversed" for v in verdicts):
        return "partly holds"
    return "does not hold" if any(v == "reversed" for v in verdicts) else "unclear"


def check_claims(clicks: pd.DataFrame, ks, max_hours: int, new_interest: dict) -> list[dict]:
    """One entry per claim: per K the paired difference a - b over seeds and a verdict."""
    later = new_interest_frame(clicks, max_hours)
    later = later.loc[later["after"] >= 1]
    out = []
    for c in CLAIMS:
        frame = clicks if c["clicks"] == "all" else later
        by_k = {
            f"recall@{k}": compare(recall_by_seed(frame, c["a"], k), recall_by_seed(frame, c["b"], k)) for k in ks
        }
        entry = {**c, "by_k": by_k, "verdict": _overall([v["verdict"] for v in by_k.values()])}
        entry["verdict_text"] = verdict_text(entry["verdict"])
        if c["clicks"] == "new_interest":
            entry["recovery_hours"] = {s: new_interest[s]["recovery_hours"] for s in (c["a"], c["b"])}
            entry["clicks_measured"] = int(len(later))
        out.append(entry)
    return out
