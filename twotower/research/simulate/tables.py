"""The simulator world's offline tables: what the package's own feature repo (feature_repo/)
declares, plus columns it does not (``signup_date``, ``activity``, ``created_at``): declaring one
of them in feature_repo/feature_views.py adds it to the towers, a one-file change."""

from __future__ import annotations

import pyarrow as pa

from twotower.core.schema import TS

USERS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("age_bucket", pa.int32()),  # 0..6
        ("gender", pa.int32()),  # 0 unknown, 1, 2
        ("city_tier", pa.int32()),  # 0..4
        ("interest_tags", pa.list_(pa.int32())),  # declared interests (tag ids > 0)
        ("activity", pa.float64()),  # expected requests per day (not declared by default)
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

