"""MovieTweetings (github.com/sidooms/MovieTweetings, MIT): Twitter users rating IMDb movies.

Movie IDs are IMDb's zero-padded numbers ("0110912") and stay strings; user IDs are strings too.
"""

from feast import Entity, ValueType

tweeter = Entity(name="tweeter", join_keys=["user_id"], value_type=ValueType.STRING)
movie = Entity(name="movie", join_keys=["movie_id"], value_type=ValueType.STRING)
embedding_slot = Entity(name="embedding_slot", join_keys=["embedding_slot"], value_type=ValueType.INT64)
