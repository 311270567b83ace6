"""The data-quality gate: GX (Core 1.x) suites written as code, one checkpoint run per day.

``validate_day(settings, ws, day) -> ValidationReport`` and ``raise_if_failed(report)`` are the
public API (see ``validation.gate``). Importing this package does not import GX (seconds); the
names below load it on first use.
"""

import os

import twotower  # noqa: F401  (sets TF_USE_LEGACY_KERAS)

# A batch job has no business phoning home; GX_ANALYTICS_ENABLED=true in the environment wins.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

__all__ = ["validate_day", "raise_if_failed", "ValidationReport", "Failure"]


def __getattr__(name: str):
    if name == "validate_day":
        from validation.gate import validate_day

        return validate_day
    if name in ("raise_if_failed", "ValidationReport", "Failure"):
        from validation import report

        return getattr(report, name)
    raise AttributeError(name)
