"""Feature views: the towers' inputs as the online store serves them.

Every field of a view in a tower's feature service (feature_services.py) is one input of that
tower; its kind follows from the dtype (Int/String/Bool: categorical, Float: numeric, Array of
them: a pooled list or a vector), and tags size it: ``buckets`` (hash buckets), ``max_len``
(values kept of a list), ``dim`` (a vector's length), ``kind`` (e.g. an Int64 count as
"numeric"); ``min`` / ``max`` declare a domain the daily data gate checks. Adding a field here
adds it to the towers, the gate and the online reads; nothing else changes.
"""

from datetime import timedelta

from entities import embedding_slot, item, user
from feast import FeatureView, Field
from feast.types import Array, Float32, Float64, Int32, Int64, String  # noqa: F401  (every dtype a field may take)
from sources import items_source, user_id_embedding_push, user_recent_clicks_push, users_source

# Profiles stay valid until replaced; the TTL only bounds point-in-time look-back.
PROFILE_TTL = timedelta(days=3650)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=PROFILE_TTL,
    schema=[
        Field(name="age_bucket", dtype=Int32, tags={"buckets": "8", "min": "0", "max": "6"}),
        Field(name="gender", dtype=Int32, tags={"buckets": "4", "min": "0", "max": "2"}),
        Field(name="city_tier", dtype=Int32, tags={"buckets": "8", "min": "0", "max": "4"}),
        Field(name="interest_tags", dtype=Array(Int32), tags={"buckets": "1024", "max_len": "3"}),
    ],
    source=users_source,
    online=True,
)

item_profile = FeatureView(
    name="item_profile",
    entities=[item],
    ttl=PROFILE_TTL,
    schema=[
        Field(name="category", dtype=Int32, tags={"buckets": "256", "min": "0"}),
        Field(name="tags", dtype=Array(Int32), tags={"buckets": "1024", "max_len": "3"}),
        Field(name="author_id", dtype=Int64, tags={"buckets": "4096"}),
    ],
    source=items_source,
    online=True,
)

# The user tower's ID embedding, published by the full update (materialize) and refreshed
# intraday by the incremental trainer (push). Keyed by (user, slot); `generation` ties a row to
# exactly one user dense tower, and serving checks it.
user_id_embedding = FeatureView(
    name="user_id_embedding",
    entities=[user, embedding_slot],
    ttl=timedelta(days=30),
    schema=[
        Field(name="embedding", dtype=Array(Float32)),
        Field(name="generation", dtype=String),
    ],
    source=user_id_embedding_push,
    online=True,
)

# The platform's own view of each user's recently clicked items (features.history_view): not a
# tower input; serving reads it to leave out what the user already clicked (exclude_seen).
user_recent_clicks = FeatureView(
    name="user_recent_clicks",
    entities=[user],
    ttl=timedelta(days=30),
    schema=[Field(name="items", dtype=Array(Int64))],
    source=user_recent_clicks_push,
    online=True,
)
