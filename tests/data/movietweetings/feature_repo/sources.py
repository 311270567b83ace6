import os
from pathlib import Path

from feast import FileSource, PushSource

_workspace = Path(os.environ["TWOTOWER_WORKSPACE"])
# movies.dat as `twotower ingest --items` wrote it into the workspace
movies = FileSource(name="movies", path=str(_workspace / "offline" / "movies.parquet"), timestamp_field="event_timestamp")
tweeter_vectors = FileSource(
    name="tweeter_vectors", path=str(_workspace / "offline" / "user_id_embedding"),
    timestamp_field="event_timestamp", created_timestamp_column="created_timestamp",
)
tweeter_vectors_push = PushSource(name="tweeter_vectors_push", batch_source=tweeter_vectors)
# each tweeter's recently rated movies, written by the platform (offline per day, pushed intraday)
recently_rated = FileSource(
    name="recently_rated", path=str(_workspace / "offline" / "recent_clicks"),
    timestamp_field="event_timestamp", created_timestamp_column="created_timestamp",
)
recently_rated_push = PushSource(name="recently_rated_push", batch_source=recently_rated)
# each movie's recent ratings, decayed: written by the platform's full updates (features.popularity_view)
rating_counts = FileSource(
    name="rating_counts", path=str(_workspace / "offline" / "item_popularity"),
    timestamp_field="event_timestamp", created_timestamp_column="created_timestamp",
)
