"""Each private internal of a dependency that the platform relies on, checked by name.

The adapters (twotower/adapters/) are the only modules that touch them. When an upgrade of
Feast, Dask or uvicorn moves one, the test below that names it fails, saying which, before a
subtler failure elsewhere (a registry written in place, a hung read, an unbounded request head).
"""

from __future__ import annotations

import inspect

import numpy as np


def _assigns(fn, *attributes: str) -> list[str]:
    """Which of ``attributes`` the source of ``fn`` does not assign."""
    src = inspect.getsource(fn)
    return [a for a in attributes if f"{a} =" not in src and f"{a} +=" not in src]


def test_feast_online_store_internals():
    import feast
    from feast.infra.online_stores.redis import RedisOnlineStore
    from feast.infra.online_stores.sqlite import SqliteOnlineStore
    from feast.infra.passthrough_provider import PassthroughProvider

    assert list(inspect.signature(feast.FeatureStore._get_provider).parameters) == ["self"]
    assert isinstance(inspect.getattr_static(PassthroughProvider, "online_store"), property)
    assert list(inspect.signature(RedisOnlineStore._get_client).parameters) == ["self", "online_store_config"]
    assert list(inspect.signature(SqliteOnlineStore._get_conn).parameters)[:2] == ["self", "config"]


def test_feast_registry_store_internals():
    from feast.infra.registry.file import FileRegistryStore
    from feast.utils import _utc_now

    from twotower.adapters.feast_registry import AtomicFileRegistryStore

    assert list(inspect.signature(FileRegistryStore._write_registry).parameters) == ["self", "registry_proto"]
    # every registry write goes through the method the atomic store overrides
    assert "self._write_registry(" in inspect.getsource(FileRegistryStore.update_registry_proto)
    assert AtomicFileRegistryStore._write_registry is not FileRegistryStore._write_registry
    assert _utc_now().tzinfo is not None


def test_dask_tokenizer_internals():
    from dask.base import normalize_token
    from dask.tokenize import hash_buffer_hex

    import twotower.adapters.dask_tokens  # noqa: F401  (installs on import)

    assert callable(normalize_token.dispatch) and callable(normalize_token.register)
    assert getattr(normalize_token.dispatch(np.ndarray), "_twotower", False)  # ours is the one in use
    assert isinstance(hash_buffer_hex(b"x"), str)


def test_uvicorn_httptools_protocol_internals():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from twotower.adapters.uvicorn_http import BoundedHttpToolsProtocol

    assert issubclass(BoundedHttpToolsProtocol, HttpToolsProtocol)
    for hook in ("on_message_begin", "on_url", "on_headers_complete", "data_received"):
        assert callable(getattr(HttpToolsProtocol, hook, None)), hook
    # the attributes the bounded protocol reads: the URL so far, the parser, where to answer
    assert _assigns(HttpToolsProtocol.on_url, "self.url") == []
    assert _assigns(HttpToolsProtocol.__init__, "self.parser", "self.logger") == []
    assert _assigns(HttpToolsProtocol.connection_made, "self.transport", "self.client") == []
