"""Entities: who and what the towers describe. IDs are int64 across the platform."""

from feast import Entity, ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="A reader of the feed")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64, description="A note in the feed")

# Two embedding slots (blue/green): a new generation writes its user ID embeddings into the slot
# the served generation is *not* using, so publishing is one pointer flip and rollback is
# instant (invariant 1 of DESIGN.md). The generation manifest names its slot.
embedding_slot = Entity(
    name="embedding_slot",
    join_keys=["embedding_slot"],
    value_type=ValueType.INT64,
    description="Blue/green slot (0 or 1) of a generation's user ID embeddings",
)
