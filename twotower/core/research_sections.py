"""The sections of the typed configuration that configure the research tools: the simulator
(``twotower simulate``) and the day-replay experiment (``twotower replay``). Kept apart from
``sections`` (the platform's own parts); ``config.Settings`` holds one of each all the same.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field, field_validator

from twotower.core.sections import _Section


class SimulatorSettings(_Section):
    """Defaults of ``twotower simulate`` (each overridable on the command line)."""

    users: int = Field(2_000, ge=10)
    items: int = Field(1_000, ge=10)
    days: int = Field(3, ge=1)
    seed: int = 0
    start_date: date = date(2026, 11, 1)
    categories: int = Field(16, ge=2)
    tags_per_category: int = Field(8, ge=1)
    authors: int = Field(0, ge=0, description="0 = items // 20")
    requests_per_user_day: float = Field(3.0, gt=0)
    impressions_per_request: int = Field(8, ge=1)
    ranked_out_per_request: int = Field(4, ge=0)
    new_users_per_day: float = Field(0.02, ge=0, le=1, description="fraction of the user base")
    new_items_per_day: float = Field(0.05, ge=0, le=1, description="fraction of the catalogue")
    new_interest_share: float = Field(
        0.1, ge=0, le=1, description="share of active users who acquire a new interest each day"
    )
    evening_shift: float = Field(
        0.6, ge=0, le=1, description="how far evening interests differ from daytime ones"
    )


class ReplaySettings(_Section):
    """The day-replay experiment (``twotower replay``): training strategies on simulated days.

    The defaults show the strategies apart in a few minutes on 2 cores (see README); every one
    can be overridden on the command line.
    """

    days: int = Field(4, ge=2, description="simulated days per seed; day 1 only trains the first model")
    seeds: int = Field(3, ge=1, description="worlds (seeds first_seed, first_seed+1, ...)")
    first_seed: int = 0
    users: int = Field(10_000, ge=10, description="users of each simulated world at the start")
    items: int = Field(5_000, ge=10, description="items of each simulated world at the start")
    step_minutes: int = Field(
        60, ge=1, le=1440, description="replay step: the channel is measured on the next step's clicks, then the chains train on them"
    )
    ks: list[int] = Field(default_factory=lambda: [50, 100], description="recall@K reported")
    recovery_k: int = Field(100, ge=1, description="K of the new-interest recovery measure")
    recovery_share: float = Field(
        0.25, gt=0, le=1,
        description="a new interest counts as recovered once the strategy's recall@recovery_k of its clicks "
        "reaches this share of the oracle's on the same clicks, two hours in a row",
    )
    max_hours: int = Field(16, ge=1, le=23, description="hours after acquiring a new interest that are followed")

    @field_validator("step_minutes")
    @classmethod
    def _step_divides_day(cls, v: int) -> int:
        if 1440 % v:
            raise ValueError(f"{v} minutes do not divide a day (1440 minutes): steps must start at the same times every day")
        return v

    @field_validator("ks")
    @classmethod
    def _ks_positive(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v):
            raise ValueError(f"{v}: give at least one K, each >= 1")
        return v
