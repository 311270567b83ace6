"""Offline store tables: the one definition of their columns and types.

The simulator writes these, ``twotower ingest`` maps user data onto them, the Feast sources
read them, GX validates them and the Dask preparation joins them. IDs are int64 everywhere.
All timestamps are UTC with microsecond precision.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

EVENT_TYPES = ("impression", "click", "ranked_out")
"""``click`` = positive; ``impression`` = shown; ``ranked_out`` = recalled for the request but
eliminated by ranking (the seed's hard negatives)."""

USERS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("age_bucket", pa.int32()),  # 0..6
        ("gender", pa.int32()),  # 0 unknown, 1, 2
        ("city_tier", pa.int32()),  # 0..4
        ("interest_tags", pa.list_(pa.int32())),  # declared interests (tag ids > 0)
        ("signup_date", pa.date32()),
        ("event_timestamp", TS),  # when this profile row became valid
    ]
)

ITEMS = pa.schema(
    [
        ("item_id", pa.int64()),
        ("category", pa.int32()),
        ("tags", pa.list_(pa.int32())),  # tag ids > 0
        ("author_id", pa.int64()),
        ("created_at", TS),
        ("event_timestamp", TS),  # = created_at: item features are valid from creation
    ]
)

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

TABLES = {"users": USERS, "items": ITEMS, "events": EVENTS}
KEYS = {"users": "user_id", "items": "item_id", "events": "event_id"}
