"""What a gate run says, for machines (the summary JSON) and for people (``format()``).

Everything here is read off the GX checkpoint result: GX judges, this module only reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from great_expectations.util import convert_to_json_serializable

from twotower.core.errors import ValidationFailed

_NOT_BOUNDS = {"column", "column_list", "column_A", "column_B", "batch_id", "result_format",
               "catch_exceptions", "include_config", "description"}
_EXAMPLES_SHOWN = 5


@dataclass(frozen=True)
class Failure:
    """One failed expectation: which, on what, what GX observed and what it expected."""

    suite: str
    expectation: str
    column: str | None
    observed: Any
    expected: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "suite": self.suite,
            "expectation": self.expectation,
            "column": self.column,
            "observed": self.observed,
            "expected": self.expected,
        }

    def describe_observed(self) -> str:
        obs = self.observed
        if isinstance(obs, dict) and "error" in obs:
            return f"error: {obs['error']}"
        if isinstance(obs, dict) and "unexpected_count" in obs:
            examples = obs.get("examples") or []
            if obs.get("element_count") == 1 and len(examples) == 1:  # one-row frames: the value
                return _short(examples[0], 200)
            if all(x is None for x in examples):  # a not-null check: the examples say nothing
                examples = []
            shown = ", ".join(_short(x) for x in examples[:_EXAMPLES_SHOWN])
            more = ", ..." if len(examples) > _EXAMPLES_SHOWN else ""
            pct = obs.get("unexpected_percent")
            pct_txt = f" ({pct:.3g}%)" if isinstance(pct, (int, float)) else ""
            return (
                f"{obs['unexpected_count']} of {obs.get('element_count')} rows unexpected{pct_txt}"
                + (f", e.g. [{shown}{more}]" if shown else "")
            )
        return _short(obs, 200)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TABLE_LEVEL = {"expect_table_columns_to_match_ordered_list", "expect_table_columns_to_match_set"}


def _column(expectation: str, kwargs: dict) -> str | None:
    """The column(s) an expectation is about; None for table-level ones."""
    if "column" in kwargs:
        return kwargs["column"]
    if "column_A" in kwargs:
        return f"{kwargs['column_A']}, {kwargs['column_B']}"
    if "column_list" in kwargs and expectation not in _TABLE_LEVEL:
        return ", ".join(kwargs["column_list"])
    return None


def _error(exception_info: Any) -> str | None:
    """The first raised exception's message (GX nests these per metric)."""
    if not exception_info:
        return None
    infos = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    for info in infos:
        if isinstance(info, dict) and info.get("raised_exception"):
            return str(info.get("exception_message") or "exception").splitlines()[0]
    return None


def _observed(result: dict, exception_info: Any) -> Any:
    error = _error(exception_info)
    if error:
        return {"error": error}
    if "observed_value" in result:
        return result["observed_value"]
    if "unexpected_count" in result:
        return {
            "unexpected_count": result["unexpected_count"],
            "element_count": result.get("element_count"),
            "unexpected_percent": result.get("unexpected_percent"),
            "examples": result.get("partial_unexpected_list", []),
        }
    return result or None


def failures_of(suite: str, validation_result) -> list[Failure]:
    out = []
    for r in validation_result.results:
        if r.success:
            continue
        config = r.expectation_config
        kwargs = dict(config.kwargs)
        column = _column(config.type, kwargs)
        expected = {k: v for k, v in kwargs.items() if k not in _NOT_BOUNDS}
        if config.type in _TABLE_LEVEL:
            expected["column_list"] = kwargs.get("column_list")
        out.append(
            Failure(
                suite=suite,
                expectation=config.type,
                column=column,
                observed=convert_to_json_serializable(_observed(dict(r.result or {}), r.exception_info)),
                expected=convert_to_json_serializable(expected),
            )
        )
    return out


@dataclass
class ValidationReport:
    """The verdict on one day."""

    day: date
    success: bool
    failures: list[Failure]
    summary_path: Path
    docs_path: Path
    suites: dict[str, bool] = field(default_factory=dict)
    evaluated: int = 0
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        verdict = "PASSED" if self.success else "FAILED"
        lines = [
            f"Data-quality gate for {self.day}: {verdict} "
            f"({self.evaluated - len(self.failures)} of {self.evaluated} expectations met)"
        ]
        for suite, ok in self.suites.items():
            n = sum(1 for f in self.failures if f.suite == suite)
            lines.append(f"  suite {suite:<12} {'ok' if ok else f'{n} failed'}")
        if self.failures:
            lines.append("Failed expectations:")
        for f in self.failures:
            where = f" on {f.column}" if f.column else ""
            bounds = ", ".join(f"{k}={_short(v, 160)}" for k, v in f.expected.items())
            lines.append(f"  - [{f.suite}] {f.expectation}{where}")
            lines.append(f"      observed: {f.describe_observed()}")
            if bounds:
                lines.append(f"      expected: {bounds}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        lines.append(f"Summary: {self.summary_path}")
        lines.append(f"Data docs: {self.docs_path}")
        return "\n".join(lines)


def raise_if_failed(report: ValidationReport) -> None:
    """Raise ``ValidationFailed`` (exit code 3) naming each failed expectation if the day failed.

    Short on purpose: callers print ``report.format()`` (observed values and all) first."""
    if report.success:
        return
    named = "; ".join(
        f"[{f.suite}] {f.expectation}" + (f" on {f.column}" if f.column else "") for f in report.failures
    )
    raise ValidationFailed(
        f"day {report.day} failed the data-quality gate ({len(report.failures)} failed "
        f"expectation(s): {named}); summary: {report.summary_path}"
    )
