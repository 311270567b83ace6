"""Entities: who and what the towers describe. IDs are int64 across the platform."""

from feast import Entity, ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="A reader of the feed")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64, description="A note in the feed")
