"""The gate's expectation suites, written as code (the code is the truth; the GX JSON in the
workspace is generated from it on every run).

One suite per asset (a frame GX reads): the three offline tables as stored, plus three
derived frames for what one table cannot say on its own (``validation.derive``). Bounds that
depend on the day are ``$PARAMETER`` references filled in by ``validation.bounds``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import great_expectations as gx
import great_expectations.expectations as gxe

from twotower.core import schema
from validation.derive import LINK_COLUMNS, qualified
from validation.load import type_name


def P(name: str) -> dict:
    """A suite parameter reference (filled in per run)."""
    return {"$PARAMETER": name}


@dataclass(frozen=True)
class Asset:
    """A frame staged for GX: its suite and how pandas reads it back."""

    name: str
    doc: str
    read_kwargs: dict = field(default_factory=dict)


ASSETS = (
    Asset("schema", "one row: the arrow type of every table.column as stored (<missing> if absent)"),
    Asset("events", "the day's events, as stored"),
    Asset("users", "users.parquet (lists as their lengths, ints as int64: derive.gx_view)"),
    Asset("items", "items.parquet (lists as their lengths, ints as int64: derive.gx_view)"),
    Asset(
        "event_links",
        "per event: its user/item when unknown or used before valid (null otherwise)",
        {"dtype_backend": "numpy_nullable"},
    ),
    Asset("day_stats", "one row: click rate and shares of never-seen users/items"),
)


def _schema() -> list:
    return [
        gxe.ExpectColumnValuesToBeInSet(
            column=qualified(table, f.name),
            value_set=[type_name(f.type)],
            description=f"{table}.{f.name} is stored as arrow type {type_name(f.type)}",
        )
        for table, arrow_schema in schema.TABLES.items()
        for f in arrow_schema
    ]


def _table_basics(name: str, key_columns: list[str]) -> list:
    columns = schema.TABLES[name].names
    unique = (
        gxe.ExpectColumnValuesToBeUnique(column=key_columns[0])
        if len(key_columns) == 1
        else gxe.ExpectCompoundColumnsToBeUnique(column_list=key_columns)
    )
    return [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=columns),
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns),
        unique,
    ]


def _events() -> list:
    return [
        *_table_basics("events", ["event_id"]),
        gxe.ExpectTableRowCountToBeBetween(min_value=P("events_min_rows"), max_value=P("events_max_rows")),
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(schema.EVENT_TYPES)),
        # min, not values_between: GX checks int32 ranges element by element in Python.
        gxe.ExpectColumnMinToBeBetween(column="position", min_value=-1),
        gxe.ExpectColumnValuesToBeBetween(
            column="event_timestamp", min_value=P("day_start"), max_value=P("day_end"), strict_max=True
        ),
    ]


def _users() -> list:
    # A user may have several profile rows over time; (user_id, event_timestamp) is the key.
    return [
        *_table_basics("users", ["user_id", "event_timestamp"]),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="age_bucket", min_value=0, max_value=6),
        gxe.ExpectColumnValuesToBeBetween(column="gender", min_value=0, max_value=2),
        gxe.ExpectColumnValuesToBeBetween(column="city_tier", min_value=0, max_value=4),
    ]


def _items() -> list:
    return [
        *_table_basics("items", ["item_id", "event_timestamp"]),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="category", min_value=0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="event_timestamp",
            column_B="created_at",
            or_equal=True,
            description="an item row is not valid before the item was created",
        ),
    ]


_LINK_DOCS = {
    "unknown_user_id": "unknown_user_id is null: every event's user_id is in users.parquet",
    "unknown_item_id": "unknown_item_id is null: every event's item_id is in items.parquet",
    "user_id_before_profile": "user_id_before_profile is null: no event is older than its "
    "user's first profile row (users.event_timestamp)",
    "item_id_before_creation": "item_id_before_creation is null: no event is older than its "
    "item's first row (items.event_timestamp)",
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


_BUILDERS = {
    "schema": _schema,
    "events": _events,
    "users": _users,
    "items": _items,
    "event_links": _event_links,
    "day_stats": _day_stats,
}


def build_suites() -> dict[str, gx.ExpectationSuite]:
    """Fresh suite objects, one per asset, named like their asset."""
    return {a.name: gx.ExpectationSuite(name=a.name, expectations=_BUILDERS[a.name]()) for a in ASSETS}
