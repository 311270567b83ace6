from datetime import timedelta

from entities import embedding_slot, movie, tweeter
from feast import FeatureView, Field
from feast.types import Array, Float32, Int64, String
from sources import movies, rating_counts, recently_rated_push, tweeter_vectors_push

# The data set has no user attributes: the user tower is the ID embedding (+ hour of day).
movie_facts = FeatureView(
    name="movie_facts", entities=[movie], ttl=timedelta(days=3650), source=movies, online=True,
    schema=[
        Field(name="year", dtype=Int64, tags={"buckets": "256", "min": "1870", "max": "2030"}),
        Field(name="genres", dtype=Array(String), tags={"buckets": "64", "max_len": "4"}),
    ],
)
user_id_embedding = FeatureView(
    name="user_id_embedding", entities=[tweeter, embedding_slot], ttl=timedelta(days=30),
    source=tweeter_vectors_push, online=True,
    schema=[Field(name="embedding", dtype=Array(Float32)), Field(name="generation", dtype=String)],
)
user_recent_clicks = FeatureView(
    name="user_recent_clicks", entities=[tweeter], ttl=timedelta(days=365), source=recently_rated_push, online=True,
    schema=[Field(name="items", dtype=Array(String))],
)
# What is rated now (a new release) predicts the next rating better than who rated what: the
# platform counts each movie's ratings, decayed over 3 and 30 days (log1p), at every full update.
item_popularity = FeatureView(
    name="item_popularity", entities=[movie], ttl=timedelta(days=3650), source=rating_counts, online=False,
    schema=[
        Field(name="ratings_3d", dtype=Float32, tags={"decay_days": "3"}),
        Field(name="ratings_30d", dtype=Float32, tags={"decay_days": "30"}),
    ],
)
