"""Sources over the workspace's offline store (parquet written by simulate/ingest/export).

The workspace comes from ``TWOTOWER_WORKSPACE``: ``twotower`` sets it for every Feast call;
set it yourself when running ``feast`` by hand.
"""

import os
from pathlib import Path

from feast import FileSource, PushSource

_ws = os.environ.get("TWOTOWER_WORKSPACE")
if not _ws:
    raise RuntimeError("TWOTOWER_WORKSPACE is not set: export it to the workspace directory before running feast")
OFFLINE = Path(_ws).resolve() / "offline"

users_source = FileSource(
    name="users",
    path=str(OFFLINE / "users.parquet"),
    timestamp_field="event_timestamp",
    description="User profiles; a row is valid from its event_timestamp on",
)

items_source = FileSource(
    name="items",
    path=str(OFFLINE / "items.parquet"),
    timestamp_field="event_timestamp",
    description="Item features, valid from item creation",
)

user_id_embedding_batch = FileSource(
    name="user_id_embedding_batch",
    path=str(OFFLINE / "user_id_embedding"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
    description="User ID embeddings exported by each full update, one parquet file per generation",
)

# Training writes fresh user ID embeddings straight into the online store through this source.
user_id_embedding_push = PushSource(name="user_id_embedding_push", batch_source=user_id_embedding_batch)

user_recent_clicks_batch = FileSource(
    name="user_recent_clicks_batch",
    path=str(OFFLINE / "recent_clicks"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
    description="Each user's recently clicked items as of each full update (one parquet file per day)",
)
# The incremental update pushes each user's list, merged with their new clicks, through this source.
user_recent_clicks_push = PushSource(name="user_recent_clicks_push", batch_source=user_recent_clicks_batch)
