"""The gate's expectation suites, written as code (the code is the truth; the GX JSON in the
workspace is generated from it on every run).

One suite per asset (a frame GX reads): the day's events and each tower table (a feature view's
source) as stored, with the columns, types and domains the feature spec declares, plus three
derived frames for what one table cannot say on its own (``validation.derive``). Bounds that
depend on the day are ``$PARAMETER`` references filled in by ``validation.bounds``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import great_expectations as gx
import great_expectations.expectations as gxe

from twotower.core import schema
from twotower.core.features import FeatureSpec
from validation.derive import LINK_COLUMNS, expected_types, qualified
from validation.load import Layout, layouts


def P(name: str) -> dict:
    """A suite parameter reference (filled in per run)."""
    return {"$PARAMETER": name}


@dataclass(frozen=True)
class Asset:
    """A frame staged for GX: its suite and how pandas reads it back."""

    name: str
    doc: str
    read_kwargs: dict = field(default_factory=dict)


def assets(spec: FeatureSpec) -> tuple[Asset, ...]:
    """The gate's assets for a feature spec: the events, one per tower table (feature view), and
    the derived frames."""
    towers = tuple(
        Asset(layout.name, f"{layout.source} (lists as their lengths, ints as int64: derive.gx_view)")
        for layout in layouts(spec)
    )
    return (
        Asset("schema", "one row: the arrow type of every table.column as stored (<missing> if absent)"),
        Asset("events", "the day's events, as stored"),
        *towers,
        Asset(
            "event_links",
            "per event: its user/item when unknown or used before valid (null otherwise)",
            {"dtype_backend": "numpy_nullable"},
        ),
        Asset("day_stats", "one row: click rate and shares of never-seen users/items"),
    )


def _schema(spec: FeatureSpec) -> list:
    tables = [("events", expected_types(spec))] + [(layout.name, expected_types(spec, layout)) for layout in layouts(spec)]
    return [
        gxe.ExpectColumnValuesToBeInSet(
            column=qualified(table, column),
            value_set=types,
            description=f"{table}.{column} is stored as arrow type {' or '.join(types)}",
        )
        for table, expected in tables
        for column, types in expected.items()
    ]


def _tower_table(layout: Layout) -> list:
    # An entity may have several rows over time; (join key, timestamp) is the key.
    declared = [layout.key, layout.timestamp, *(f.name for f in layout.features)]
    out = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=declared, exact_match=False,
            description=f"the source has every column the view declares: {', '.join(declared)}",
        ),
        gxe.ExpectColumnValuesToNotBeNull(column=layout.key),
        gxe.ExpectColumnValuesToNotBeNull(column=layout.timestamp),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=[layout.key, layout.timestamp]),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
    ]  # fmt: skip
    for f in layout.features:
        if f.min is not None or f.max is not None:
            cast = int if f.value == "int" else float
            bounds = {k: cast(v) for k, v in (("min_value", f.min), ("max_value", f.max)) if v is not None}
            out.append(gxe.ExpectColumnValuesToBeBetween(
                column=f.name, **bounds, description=f"{f.ref} within its declared domain (tags min / max)"))  # fmt: skip
    return out


def _events(spec: FeatureSpec) -> list:
    columns = schema.events(spec.user.id_type, spec.item.id_type).names
    return [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=columns),
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns),
        gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        gxe.ExpectTableRowCountToBeBetween(min_value=P("events_min_rows"), max_value=P("events_max_rows")),
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(schema.EVENT_TYPES)),
        # min, not values_between: GX checks int32 ranges element by element in Python.
        gxe.ExpectColumnMinToBeBetween(column="position", min_value=-1),
        gxe.ExpectColumnValuesToBeBetween(
            column="event_timestamp", min_value=P("day_start"), max_value=P("day_end"), strict_max=True
        ),
    ]


_LINK_DOCS = {
    "unknown_user_id": "unknown_user_id is null: every event's user_id is in the user tower's tables",
    "unknown_item_id": "unknown_item_id is null: every event's item_id is in the item tower's tables",
    "user_id_before_profile": "user_id_before_profile is null: no event is older than its "
    "user's first row (the views' timestamps)",
    "item_id_before_creation": "item_id_before_creation is null: no event is older than its "
    "item's first row (the views' timestamps)",
}


def _event_links() -> list:
    return [
        gxe.ExpectTableRowCountToEqual(
            value=P("events_rows"),
            description="the cross-table facts cover every event of the day (0 rows: the "
            "events/users/items columns they need are missing or mistyped, see the schema suite)",
        ),
        *(gxe.ExpectColumnValuesToBeNull(column=c, description=_LINK_DOCS[c]) for c in LINK_COLUMNS),
    ]


def _day_stats() -> list:
    return [
        gxe.ExpectColumnMeanToBeBetween(
            column="click_rate",
            min_value=P("click_rate_min"),
            max_value=P("click_rate_max"),
            description="clicks / impressions of the day within the band around the reference day",
        ),
        gxe.ExpectColumnMeanToBeBetween(
            column="new_user_share",
            min_value=0,
            max_value=P("new_user_share_max"),
            description="share of the day's distinct users seen on no earlier day",
        ),
        gxe.ExpectColumnMeanToBeBetween(
            column="new_item_share",
            min_value=0,
            max_value=P("new_item_share_max"),
            description="share of the day's distinct items seen on no earlier day",
        ),
    ]


def build_suites(spec: FeatureSpec) -> dict[str, gx.ExpectationSuite]:
    """Fresh suite objects, one per asset, named like their asset."""
    towers = {layout.name: layout for layout in layouts(spec)}
    builders = {"schema": lambda: _schema(spec), "events": lambda: _events(spec),
                "event_links": _event_links, "day_stats": _day_stats}  # fmt: skip
    builders.update({name: (lambda layout=layout: _tower_table(layout)) for name, layout in towers.items()})
    return {a.name: gx.ExpectationSuite(name=a.name, expectations=builders[a.name]()) for a in assets(spec)}
