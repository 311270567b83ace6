from feast import FeatureService
from views import item_popularity, movie_facts, user_id_embedding, user_recent_clicks

user_tower = FeatureService(name="user_tower", features=[user_id_embedding, user_recent_clicks])
item_tower = FeatureService(name="item_tower", features=[movie_facts, item_popularity])
