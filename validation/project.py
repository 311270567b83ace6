"""The GX project in the workspace (``ws.gx_dir``): generated from code, then run.

Every run re-creates the datasource, suites, validation definitions and the checkpoint from
``validation.suites`` (a few milliseconds), so the JSON under ``gx/`` can never drift from the
code. Validation results and data docs accumulate under ``gx/uncommitted``.

Why staged parquet files rather than in-memory dataframes: one checkpoint validates six
different frames, and a GX dataframe asset takes its frame from the checkpoint's batch
parameters, which are shared by all validation definitions of a run. Files named by day let a
single ``checkpoint.run(batch_parameters={year, month, day})`` pick each asset's frame.
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import great_expectations as gx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context import AbstractDataContext
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

from twotower.core.workspace import Workspace
from twotower.core.features import FeatureSpec
from validation.suites import assets, build_suites

DATASOURCE = "offline_day"
CHECKPOINT = "daily_gate"
DOCS_SITE = "local_site"
DAY_REGEX = r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})\.parquet"


def batches_dir(ws: Workspace) -> Path:
    return ws.gx_dir / "uncommitted" / "batches"


def batch_path(ws: Workspace, asset: str, day: date) -> Path:
    return batches_dir(ws) / asset / f"{day.isoformat()}.parquet"


def stage_frame(ws: Workspace, asset: str, day: date, frame: pd.DataFrame | pa.Table) -> None:
    path = batch_path(ws, asset, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path)


def stage_file(ws: Workspace, asset: str, day: date, source: Path) -> None:
    """A stored table that is one file already: link to it instead of copying it."""
    path = batch_path(ws, asset, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    try:
        os.link(source, path)
    except OSError:  # another filesystem
        shutil.copyfile(source, path)


def clear_batches(ws: Workspace, day: date, spec: FeatureSpec) -> None:
    for asset in assets(spec):
        batch_path(ws, asset.name, day).unlink(missing_ok=True)


def _forget(collection, name: str, stored: Path) -> None:
    """Remove a generated definition: through GX, or, when GX cannot read it back (a run
    killed half-way, a hand-edited file), by deleting its file; the code re-creates it."""
    try:
        collection.delete(name)
    except Exception:  # noqa: BLE001 - whatever GX raises, the file goes below
        pass
    stored.unlink(missing_ok=True)


def _site_config(index_results: int) -> dict:
    # The index lists only the newest results: building it loads each listed result, and the
    # index is rebuilt every day, so an unbounded index makes every day slower.
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": f"uncommitted/data_docs/{DOCS_SITE}/",
        },
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "validation_results_limit": index_results,
        },
    }


def open_project(
    ws: Workspace, spec: FeatureSpec, *, examples: int, index_days: int
) -> tuple[AbstractDataContext, gx.Checkpoint]:
    """Get the file context in the workspace and (re)generate every definition from code."""
    ASSETS = assets(spec)
    ws.root.mkdir(parents=True, exist_ok=True)
    batches_dir(ws).mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(ws.root))
    bars = context.variables.progress_bars  # a dict once read back from the yml
    if bars is None or bars["globally"] or bars["metric_calculations"]:
        # tqdm bars on stderr would drown the report in a CLI or a scheduler's log.
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        context.variables.save()
    site = _site_config(index_days * len(ASSETS))
    if DOCS_SITE in context.list_data_docs_sites():
        if context.list_data_docs_sites()[DOCS_SITE] != site:
            context.update_data_docs_site(DOCS_SITE, site)
    else:
        context.add_data_docs_site(DOCS_SITE, site)

    gx_dir = ws.gx_dir
    _forget(context.checkpoints, CHECKPOINT, gx_dir / "checkpoints" / f"{CHECKPOINT}.json")
    for asset in ASSETS:
        _forget(
            context.validation_definitions, asset.name,
            gx_dir / "validation_definitions" / f"{asset.name}.json",
        )
        _forget(context.suites, asset.name, gx_dir / "expectations" / f"{asset.name}.json")
    if DATASOURCE in context.data_sources.all():
        context.data_sources.delete(DATASOURCE)

    source = context.data_sources.add_pandas_filesystem(DATASOURCE, base_directory=batches_dir(ws))
    suites = build_suites(spec)
    definitions = []
    for asset in ASSETS:
        options = {"kwargs": asset.read_kwargs} if asset.read_kwargs else {}
        data_asset = source.add_parquet_asset(
            asset.name, glob_directive=f"{asset.name}/*.parquet", **options
        )
        batch = data_asset.add_batch_definition_daily("day", regex=f"{asset.name}/{DAY_REGEX}")
        suite = context.suites.add(suites[asset.name])
        definitions.append(
            context.validation_definitions.add(
                gx.ValidationDefinition(name=asset.name, data=batch, suite=suite)
            )
        )
    return context, context.checkpoints.add(
        gx.Checkpoint(
            name=CHECKPOINT,
            validation_definitions=definitions,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": examples},
        )
    )


def run_checkpoint(context: AbstractDataContext, checkpoint: gx.Checkpoint, day: date, parameters: dict):
    """Validate the day's batches, then build their data docs pages and the index in one pass.

    Not GX's ``UpdateDataDocsAction``: it rebuilds the site once per validation result (six
    times a day, each compiling every page template again: 6 of a tiny day's 12 s).
    """
    run_id = RunIdentifier(run_name=f"gate-{day.isoformat()}")
    result = checkpoint.run(
        batch_parameters={"year": day.year, "month": day.month, "day": day.day},
        expectation_parameters=parameters,
        run_id=run_id,
    )
    pages = [*result.run_results]
    pages += [ExpectationSuiteIdentifier(name=key.expectation_suite_identifier.name) for key in result.run_results]
    context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=pages)
    return result


def docs_paths(context: AbstractDataContext, result) -> tuple[Path, dict[str, Path]]:
    """(the site's index.html, the data docs page of each suite's result in this run)."""
    index = _as_path(context.get_docs_sites_urls(site_name=DOCS_SITE)[0]["site_url"])
    pages = {}
    for key in result.run_results:
        urls = context.get_docs_sites_urls(resource_identifier=key, site_name=DOCS_SITE)
        if urls and urls[0].get("site_url"):
            pages[key.expectation_suite_identifier.name] = _as_path(urls[0]["site_url"])
    return index, pages


def _as_path(url: str) -> Path:
    return Path(url.removeprefix("file://"))
