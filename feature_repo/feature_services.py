"""Feature services: the towers' input contracts.

Serving asks for ``user_tower`` by name, so adding a feature to the user tower is one change
here plus the model, never a list of feature names copied into the request path.
"""

from feast import FeatureService
from feature_views import item_profile, user_id_embedding, user_profile, user_recent_clicks

user_tower = FeatureService(
    name="user_tower",
    features=[user_profile, user_id_embedding, user_recent_clicks],
    description="Online inputs of the user tower: profile + ID embedding (with its generation) + recent clicks",
)

user_tower_profile = FeatureService(
    name="user_tower_profile",
    features=[user_profile],
    description="Profile-only inputs, for training-set retrieval and users without an embedding",
)

item_tower = FeatureService(
    name="item_tower",
    features=[item_profile],
    description="Inputs of the item tower (batch export of item vectors)",
)
