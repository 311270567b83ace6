"""``validate_day``: the data-quality gate of one day (wiring; the logic lives in the modules
it calls: ``load`` reads, ``derive`` computes facts, ``suites`` states the rules, GX judges,
``report`` tells)."""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timezone

from twotower.core.config import Settings
from twotower.core.features import FeatureSpec
from twotower.core.files import atomic_write_bytes
from twotower.core.workspace import Workspace
from validation import bounds, derive, history, load, project
from validation.history import summary_path
from validation.report import ValidationReport, failures_of


def validate_day(settings: Settings, ws: Workspace, day: date, spec: FeatureSpec | None = None) -> ValidationReport:
    """Run every suite on ``day`` in one GX checkpoint, build its data docs and write the summary.

    ``spec``: the feature spec whose tower tables are judged (default: the workspace's last
    ``feast apply``). Raises ``DataError`` only when the input cannot be read at all (no
    partition, not parquet); anything readable but wrong is a failed expectation in the report.
    """
    cfg = settings.validation
    spec = spec or FeatureSpec.load(ws.feature_spec_path)
    started = time.perf_counter()
    # A verdict from an earlier run must not outlive this one if this one dies half-way.
    summary_path(ws, day).unlink(missing_ok=True)
    events, towers = load.read_day(ws, day, spec)
    parts = events.files
    today = history.profile_of(day, events.data)
    past = history.history_before(ws, day)
    links, link_notes = derive.event_links(events, towers, spec)
    stats, facts = derive.day_stats(today, past)
    parameters = bounds.parameters(cfg, day, past.previous, first_day=not any(d < day for d in ws.days()))
    parameters["events_rows"] = events.data.num_rows  # event_links must cover every event
    notes_extra = []
    if today.impressions == 0 and not cfg.require_impressions:  # a click-only log: no rate to judge
        stats["click_rate"] = 0.0
        parameters["click_rate_min"] = parameters["click_rate_max"] = 0.0
        notes_extra.append("no impressions logged (validation.require_impressions is off): the click rate is not judged")

    derived_at = time.perf_counter()
    try:  # the batches first: GX checks that an asset's files exist when it is declared
        expected = [(events, derive.expected_types(spec))]
        expected += [(table, derive.expected_types(spec, layout)) for layout, table in towers]
        project.stage_frame(ws, "schema", day, derive.schema_frame(expected))
        if len(parts) == 1:
            project.stage_file(ws, "events", day, parts[0])
        else:
            project.stage_frame(ws, "events", day, events.data)
        for layout, table in towers:
            project.stage_frame(ws, layout.name, day, derive.gx_view(table.data))
        project.stage_frame(ws, "event_links", day, links)
        project.stage_frame(ws, "day_stats", day, stats)
        context, checkpoint = project.open_project(
            ws, spec, examples=cfg.examples, index_days=cfg.docs_index_days
        )
        checked_at = time.perf_counter()
        result = project.run_checkpoint(context, checkpoint, day, parameters)
        finished_at = time.perf_counter()
    finally:
        if not cfg.keep_batches:
            project.clear_batches(ws, day, spec)
    history.save_profile(ws, today, parts)  # tomorrow's reference, without re-reading today

    docs_index, pages = project.docs_paths(context, result)
    suites, failures, evaluated = {}, [], 0
    for key, vr in result.run_results.items():
        name = key.expectation_suite_identifier.name
        suites[name] = bool(vr.success)
        failures.extend(failures_of(name, vr))
        evaluated += len(vr.results)
    notes = list(dict.fromkeys([*link_notes, *today.notes, *past.notes, *notes_extra]))  # once each, in order
    path = summary_path(ws, day)
    summary = {
        "day": day.isoformat(),
        "success": bool(result.success),
        "validated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": {
            "read_and_derive": round(derived_at - started, 3),
            "stage_and_define": round(checked_at - derived_at, 3),
            "checkpoint": round(finished_at - checked_at, 3),
            "total": round(time.perf_counter() - started, 3),
        },
        "suites": {
            name: {
                "success": ok,
                "failures": [f.as_dict() for f in failures if f.suite == name],
                "docs_page": str(pages.get(name, "")),
            }
            for name, ok in suites.items()
        },
        "failures": [f.as_dict() for f in failures],
        "evaluated": evaluated,
        "parameters": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in parameters.items()},
        "facts": facts,
        "notes": notes,
        "docs_path": str(docs_index),
    }
    atomic_write_bytes(path, json.dumps(summary, indent=2, default=str).encode())
    return ValidationReport(
        day=day,
        success=bool(result.success),
        failures=failures,
        summary_path=path,
        docs_path=docs_index,
        suites=suites,
        evaluated=evaluated,
        notes=notes,
    )
