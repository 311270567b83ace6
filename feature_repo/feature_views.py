"""Feature views: the towers' inputs as the online store serves them."""

from datetime import timedelta

from entities import embedding_slot, item, user
from feast import FeatureView, Field
from feast.types import Array, Float32, Int32, Int64, String
from sources import items_source, user_id_embedding_push, users_source

# Profiles stay valid until replaced; the TTL only bounds point-in-time look-back.
PROFILE_TTL = timedelta(days=3650)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=PROFILE_TTL,
    schema=[
        Field(name="age_bucket", dtype=Int32),
        Field(name="gender", dtype=Int32),
        Field(name="city_tier", dtype=Int32),
        Field(name="interest_tags", dtype=Array(Int32)),
    ],
    source=users_source,
    online=True,
)

item_profile = FeatureView(
    name="item_profile",
    entities=[item],
    ttl=PROFILE_TTL,
    schema=[
        Field(name="category", dtype=Int32),
        Field(name="tags", dtype=Array(Int32)),
        Field(name="author_id", dtype=Int64),
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
