"""The Feast internals the platform's online path relies on (feast==0.67.0), used only here.

Serving and the incremental push read and write rows through the provider's online store
object directly (``online_read`` / ``online_write_batch``), skipping the SDK's per-request
feature-service resolution, and bound its waits through its lazy client / connection. None of
these is public API; tests/test_adapters.py checks that each still exists with the shape used
here, so a Feast upgrade that moves one fails there, by name.
"""


def online_store_of(store):
    """The ``OnlineStore`` object behind a ``feast.FeatureStore``."""
    return store._get_provider().online_store


def redis_client(online, config):
    """The Redis online store's client (lazy: does not connect)."""
    return online._get_client(config.online_store)


def sqlite_connection(online, config):
    """The SQLite online store's connection."""
    return online._get_conn(config)
