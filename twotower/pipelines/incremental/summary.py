"""What an incremental run did: counters (also written to the freshness file) and the CLI summary."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Totals:
    batches: int = 0
    entries: int = 0  # stream entries consumed
    trained_clicks: int = 0  # examples trained (clicks after the generation's day)
    publishes: int = 0
    pushed_users: int = 0
    skipped_not_newer: int = 0
    not_landed: int = 0
    no_own_row_users: int = 0  # users trained through OOV rows, not pushed
    history_users: int = 0  # users whose recently clicked items were pushed (features.history_view)
    chains_started: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class IncrementalSummary:
    generation: str | None = None
    position: str | None = None
    end: str | None = None
    lag: int | None = None
    seconds: float = 0.0
    totals: Totals = field(default_factory=Totals)
    freshness: dict = field(default_factory=dict)
    generations: list[str] = field(default_factory=list)

    @property
    def entries_per_second(self) -> float:
        return self.totals.entries / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        t = self.totals
        out = [
            f"incremental: {t.entries:,} events in {t.batches:,} micro-batches ({self.entries_per_second:,.0f} events/s), "
            f"{t.trained_clicks:,} clicks trained, {t.publishes:,} publishes, {t.pushed_users:,} user embeddings pushed "
            f"({t.skipped_not_newer:,} not newer than the stored row, {t.not_landed:,} not landed, "
            f"{t.no_own_row_users:,} users without an own row served by OOV)",
            f"serving generation {self.generation}; committed position {self.position} of {self.end}"
            + (f" (lag {self.lag:,} events)" if self.lag is not None else ""),
        ]
        for kind, s in self.freshness.items():
            if s.get("count"):
                out.append(f"freshness {kind.replace('_seconds', '').replace('_', ' ')}: p50 {s['p50']:.2f}s, "
                           f"p95 {s['p95']:.2f}s, max {s['max']:.2f}s over {s['count']:,} pushed users")  # fmt: skip
        return out
