"""Offline store tables: the one definition of their columns and types.

The events table and the user ID embeddings are the platform's own (their user and item IDs
typed as the feature repo's entities declare them: ``events``, ``user_id_embedding``). The
towers' tables follow from the feature spec (``tower_table``); the simulator's own world
(``twotower.research.simulate.tables``) is one such repo. All timestamps are UTC with
microsecond precision.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

EVENT_TYPES = ("impression", "click", "ranked_out")
"""``click`` = positive; ``impression`` = shown; ``ranked_out`` = recalled for the request but
eliminated by ranking (the seed's hard negatives)."""

EVENTS = pa.schema(
    [
        ("event_id", pa.int64()),  # unique in the store
        ("request_id", pa.int64()),  # groups impressions/clicks/ranked-out of one request
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("event_type", pa.string()),  # one of EVENT_TYPES
        ("position", pa.int32()),  # rank shown; -1 for ranked_out
        ("event_timestamp", TS),
    ]
)

def user_id_embedding(join_key: str = "user_id", id_type: str = "int") -> pa.Schema:
    """The batch source of the user ID embedding view, keyed by the user entity's join key."""
    return pa.schema([(join_key, pa.int64() if id_type == "int" else pa.string()), *list(USER_ID_EMBEDDING)[1:]])


def recent_clicks(join_key: str, user_id_type: str, item_id_type: str) -> pa.Schema:
    """The batch source of the history view: each user's recently clicked items, newest first."""
    ids = {"int": pa.int64(), "string": pa.string()}
    return pa.schema([(join_key, ids[user_id_type]), ("items", pa.list_(ids[item_id_type])), ("event_timestamp", TS),
                      ("created_timestamp", TS)])  # fmt: skip


USER_ID_EMBEDDING = pa.schema(
    [
        ("user_id", pa.int64()),
        ("embedding_slot", pa.int64()),  # blue/green slot of the generation (0 or 1)
        ("embedding", pa.list_(pa.float32())),
        ("generation", pa.string()),
        ("event_timestamp", TS),  # newest event the embedding includes (for freshness / newest-wins)
        ("created_timestamp", TS),
    ]
)


_FEAST_ARROW = {"Int32": pa.int32(), "Int64": pa.int64(), "String": pa.string(), "Bool": pa.bool_(),
                "Float32": pa.float32(), "Float64": pa.float64()}  # fmt: skip


def feast_arrow_type(dtype: str) -> pa.DataType:
    """The arrow type a Feast dtype is stored as ("Array(String)" -> list<string>)."""
    if dtype.startswith("Array(") and dtype.endswith(")"):
        return pa.list_(_FEAST_ARROW[dtype[6:-1]])
    return _FEAST_ARROW[dtype]


def id_arrow_type(id_type: str) -> pa.DataType:
    return pa.int64() if id_type == "int" else pa.string()


def events(user_id_type: str = "int", item_id_type: str = "int") -> pa.Schema:
    """The events table with the user and item IDs typed as their entities declare them."""
    types = {"user_id": id_arrow_type(user_id_type), "item_id": id_arrow_type(item_id_type)}
    return pa.schema([(f.name, types.get(f.name, f.type)) for f in EVENTS])


def tower_table(tower) -> pa.Schema:
    """The offline table of a one-view tower as ``twotower ingest`` writes it: the join key, the
    declared fields (as their Feast dtypes are stored) and the view's timestamp."""
    (view,) = tower.data_views()
    return pa.schema([(tower.join_key, id_arrow_type(tower.id_type)),
                      *((f.name, feast_arrow_type(f.dtype)) for f in tower.features if f.view == view),
                      (tower.source(view).timestamp_field, TS)])  # fmt: skip


def popularity(tower, view: str) -> pa.Schema:
    """The batch source of the popularity view (``materialize.popularity``): the item key, the
    view's fields (decayed clicks, log1p), its timestamp and the created timestamp."""
    source = tower.source(view)
    return pa.schema([(tower.join_key, id_arrow_type(tower.id_type)),
                      *((f.name, feast_arrow_type(f.dtype)) for f in tower.features if f.view == view),
                      (source.timestamp_field, TS), (source.created_timestamp_column or "created_timestamp", TS)])  # fmt: skip
