"""The strategies the replay compares, by name. Every one sees the same days of data.

Day 1 of a world only bootstraps (there is no model to serve it); days 2..N are measured.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Strategy:
    key: str
    label: str
    description: str


STRATEGIES: tuple[Strategy, ...] = (
    Strategy(
        "full_incremental", "full + incremental",
        "the seed's way: at midnight a full update (shuffled, one epoch, warm start from the previous "
        "full model); through the day an incremental chain from it (ID embeddings, time order)",
    ),
    Strategy("full_only", "full only", "the same nightly full model, frozen through the day"),
    Strategy(
        "incremental_only", "incremental only",
        "the full model of day 1, then only the incremental chain, carried over midnight for ever "
        "(vocabularies and catalogue still grow each midnight; dense layers never train again)",
    ),
    Strategy(
        "time_ordered_full", "time-ordered full",
        "nightly full updates on the same data in time order instead of shuffled (from day 1, "
        "its own lineage), frozen through the day",
    ),
    Strategy("no_update", "no update", "the day-1 full model, for ever"),
)
KEYS: tuple[str, ...] = tuple(s.key for s in STRATEGIES)
LABELS: dict[str, str] = {s.key: s.label for s in STRATEGIES}
ORACLE = "oracle"
