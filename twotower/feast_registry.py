"""Feast's file registry, written atomically.

Feast's ``FileRegistryStore`` truncates ``registry.db`` and writes the new bytes in place: a
``kill -9`` inside that write (``feast apply``, or a materialize recording its progress in the
publish step) would leave an empty registry, and every new server or updater would then fail
until someone re-applied. This store writes a temporary file beside it, fsyncs and renames it
over the old one, so the registry is always one complete version (DESIGN invariant 2).
``feature_store.render_yaml`` names it as the registry's ``registry_store_type``.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from feast.infra.registry.file import FileRegistryStore
from feast.utils import _utc_now


class AtomicFileRegistryStore(FileRegistryStore):
    def _write_registry(self, registry_proto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(_utc_now())
        directory = self._filepath.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self._filepath.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb", buffering=0) as fh:
                fh.write(registry_proto.SerializeToString())
                os.fsync(fh.fileno())
            os.replace(tmp, self._filepath)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
