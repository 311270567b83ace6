"""All the replay's numbers in one plain dict (what results.json holds). Pure."""

from __future__ import annotations

import pandas as pd

from twotower.core.config import ReplaySettings, Settings
from twotower.research.replay import metrics
from twotower.research.replay.claims import check_claims
from twotower.research.replay.strategies import KEYS, ORACLE, STRATEGIES


def build_results(clicks: pd.DataFrame, cfg: ReplaySettings, settings: Settings) -> dict:
    keys = [*KEYS, ORACLE]
    ni = metrics.new_interest(clicks, KEYS, cfg.recovery_k, cfg.recovery_share, cfg.max_hours, ORACLE)
    seeds = sorted(int(s) for s in clicks["seed"].unique())
    return {
        "config": {
            **cfg.model_dump(mode="json"),
            "seeds": seeds,
            "measured_days": sorted(clicks["day"].unique().tolist()),
            "simulator": settings.simulator.model_dump(mode="json", exclude={"users", "items", "days", "seed"}),
            "model": {k: getattr(settings.model, k) for k in (
                "objective", "learning_rate", "batch_size", "optimizer", "id_optimizer", "id_learning_rate",
                "id_initial_accumulator", "incremental_learning_rate", "incremental_initial_accumulator")},
            "incremental_batch_size": settings.incremental.batch_size,
        },  # fmt: skip
        "strategies": [{"key": s.key, "label": s.label, "description": s.description} for s in STRATEGIES],
        "measured_clicks": int(len(clicks)),
        "summary": metrics.summary(clicks, keys, cfg.ks),
        "hourly": metrics.by_hour(clicks, keys, cfg.ks),
        "timeline": metrics.timeline(clicks, keys, cfg.ks),
        "new_interest": ni,
        "claims": check_claims(clicks, cfg.ks, cfg.max_hours, ni),
    }
