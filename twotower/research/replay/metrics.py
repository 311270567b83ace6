"""From the per-click table of a replay to the numbers it reports. Pure pandas/numpy.

The table has one row per measured click: ``seed``, ``day``, ``hour``, ``t_us``, ``since_us``
(-1 unless the click is in a new interest acquired earlier that day) and ``rank_<strategy>``
for every strategy and the oracle. A click is *recalled at K* when its rank is < K.

Every number is first computed per seed (the world and the initialisation change with the
seed) and then summarised over seeds, so a difference can be read against seed-to-seed noise.
"""

from __future__ import annotations

import math

from twotower.core.timeutil import US_PER_HOUR


import numpy as np
import pandas as pd



def spread(values) -> dict:
    """mean, std (n-1; 0 for one value), min, max and the per-seed values."""
    v = np.asarray(list(values), dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "per_seed": []}
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "min": float(v.min()), "max": float(v.max()),
            "per_seed": [float(x) for x in v]}  # fmt: skip


def _hits(frame: pd.DataFrame, key: str, k: int) -> pd.Series:
    return frame[f"rank_{key}"] < k


def recall_by_seed(clicks: pd.DataFrame, key: str, k: int) -> pd.Series:
    """seed -> recall@k pooled over every measured click of that seed."""
    return _hits(clicks, key, k).groupby(clicks["seed"]).mean()


def summary(clicks: pd.DataFrame, keys, ks) -> dict:
    """{key: {"recall@K": spread over seeds}} for all clicks."""
    return {key: {f"recall@{k}": spread(recall_by_seed(clicks, key, k)) for k in ks} for key in keys}


def by_hour(clicks: pd.DataFrame, keys, ks, column: str = "hour") -> dict:
    """Recall per ``column`` value (hour of day, or replay step), mean and std over seeds."""
    values = sorted(clicks[column].unique().tolist())
    out: dict = {column: values, "clicks": clicks.groupby(column).size().reindex(values).tolist()}
    for key in keys:
        out[key] = {}
        for k in ks:
            per = _hits(clicks, key, k).groupby([clicks[column], clicks["seed"]]).mean().unstack("seed")
            per = per.reindex(values)
            out[key][f"recall@{k}"] = {
                "mean": [float(x) for x in per.mean(axis=1)],
                "std": [float(x) if not math.isnan(x) else 0.0 for x in per.std(axis=1, ddof=1)],
            }
    return out


def timeline(clicks: pd.DataFrame, keys, ks) -> dict:
    """Recall per replay step (every hour of every measured day), mean over seeds."""
    frame = clicks.assign(step=clicks["day"].astype(str) + " " + clicks["hour"].map("{:02d}h".format))
    return by_hour(frame, keys, ks, column="step")


def new_interest_frame(clicks: pd.DataFrame, max_hours: int) -> pd.DataFrame:
    """Clicks in a new interest, with ``after`` = whole hours since it was acquired."""
    ni = clicks.loc[clicks["since_us"] >= 0]
    after = (ni["t_us"] - ni["since_us"]) // US_PER_HOUR
    return ni.assign(after=after.astype(np.int64)).loc[lambda d: d["after"] <= max_hours]


def recovery_hours(ratio: pd.Series, share: float, sustain: int = 2) -> float | None:
    """First hour ``h`` (index of ``ratio``) from which ratio >= share for ``sustain`` hours in a
    row (the last hours of the curve count if they all pass); None if never."""
    ok = (ratio >= share).to_numpy()
    hours = ratio.index.to_numpy()
    for i in range(len(ok)):
        if ok[i : i + sustain].all():
            return float(hours[i])
    return None


def new_interest(clicks: pd.DataFrame, keys, k: int, share: float, max_hours: int, oracle: str) -> dict:
    """How fast each strategy follows interests acquired during the day.

    Per seed and hour h after acquisition (``after``), recall@k of the new-interest clicks and
    the oracle's recall@k of the same clicks; *hours to recover* = the first h from which the
    strategy's recall stays >= ``share`` x the oracle's for 2 hours in a row (None: not within
    the day). Also the mean recall over hours >= 1 (the hour of acquisition itself is before
    any update could react).
    """
    ni = new_interest_frame(clicks, max_hours)
    hours = list(range(max_hours + 1))
    counts = ni.groupby("after").size().reindex(hours, fill_value=0).tolist()
    out: dict = {"k": k, "share": share, "hours": hours, "clicks": counts}
    oracle_curve = _hits(ni, oracle, k).groupby([ni["after"], ni["seed"]]).mean().unstack("seed").reindex(hours)
    out[oracle] = {"curve": [_num(x) for x in oracle_curve.mean(axis=1)]}
    for key in keys:
        curve = _hits(ni, key, k).groupby([ni["after"], ni["seed"]]).mean().unstack("seed").reindex(hours)
        ratio = curve / oracle_curve
        later = ni.loc[ni["after"] >= 1]
        out[key] = {
            "curve": [_num(x) for x in curve.mean(axis=1)],
            "curve_std": [_num(x) for x in curve.std(axis=1, ddof=1)],
            "ratio_to_oracle": [_num(x) for x in ratio.mean(axis=1)],
            "recovery_hours": [recovery_hours(ratio[s].dropna(), share) for s in ratio.columns],
            "recall_after_1h": spread(_hits(later, key, k).groupby(later["seed"]).mean()),
        }
    return out


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def compare(a_by_seed: pd.Series, b_by_seed: pd.Series) -> dict:
    """Paired difference a - b over seeds, and whether it is clear against seed noise.

    ``holds``: every seed shows a > b and the mean difference exceeds 2 standard errors;
    ``reversed``: the same the other way round; else ``unclear``.
    """
    diff = (a_by_seed - b_by_seed).dropna()
    s = spread(diff)
    n = len(diff)
    se = (s["std"] / math.sqrt(n)) if n > 1 else float("inf")
    if n and (diff > 0).all() and s["mean"] > 2 * se:
        verdict = "holds"
    elif n and (diff < 0).all() and -s["mean"] > 2 * se:
        verdict = "reversed"
    else:
        verdict = "unclear"
    return {**s, "standard_error": se if math.isfinite(se) else None, "verdict": verdict}
