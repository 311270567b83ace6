"""Import-time hooks the package root installs once, before any dependency is imported.

**TensorFlow's C++ start-up lines** ("All log messages before absl::InitializeLog() ...",
"Could not find cuda drivers ...") are written to file descriptor 2 while ``import tensorflow``
runs, before any log level is read. ``quiet_tensorflow_import`` sends that descriptor to a
temporary file for the duration of the first ``import tensorflow`` when ``TF_CPP_MIN_LOG_LEVEL``
is 3 (what ``core.logs.configure`` sets unless ``-v``) and replays what it caught if the import
fails.

**Feast's import-time instrumentation.** Feast decorates its declaration classes
(``FeatureService``, ``FeatureView``, ``Field``, the data sources ...) with typeguard's
``@typechecked``, which re-reads, re-parses and recompiles every decorated module when it is
imported: 5 of the 7 s that ``import feast`` takes on 2 cores, paid by every process that reads
the registry (each CLI command, each full update, the server). Typeguard documents the decorator
as a development aid that is a no-op under ``python -O``. ``feast_without_typechecks`` gives the
platform's own processes exactly that, for Feast's classes only, on the first ``import feast``:
they read declarations from the registry, which Feast itself wrote. The one process that runs
the *user's* declarations (``feature_store.repo``'s child, which also runs ``feast apply``) sets
``FEAST_TYPECHECKS`` so that a wrong argument there fails as it does under Feast's own CLI -
until those declarations (by content) passed the checks once.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import tempfile

FEAST_TYPECHECKS = "TWOTOWER_FEAST_TYPECHECKS"  # "1": keep Feast's typeguard instrumentation


class _Wrapped(importlib.abc.Loader):
    """Delegates to a module's own loader; subclasses run code around its ``exec_module``."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _Once(importlib.abc.MetaPathFinder):
    """Answers the first import of ``name`` with its real spec, its loader wrapped, then leaves."""

    name = ""
    loader: type[_Wrapped] = _Wrapped

    def wanted(self) -> bool:
        return True

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name or not self.wanted():
            return None
        sys.meta_path.remove(self)  # once: the real finder below answers from here on
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = self.loader(spec.loader)
        return spec

    @classmethod
    def install(cls) -> None:
        if cls.name in sys.modules or any(isinstance(f, cls) for f in sys.meta_path):
            return
        sys.meta_path.insert(0, cls())


class _QuietLoader(_Wrapped):
    """Runs TensorFlow's module code with descriptor 2 sent to a file."""

    def exec_module(self, module) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                self._loader.exec_module(module)
            except BaseException:
                os.dup2(saved, 2)
                sink.seek(0)
                os.write(2, sink.read())
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)


class _QuietTensorFlow(_Once):
    name, loader = "tensorflow", _QuietLoader

    def wanted(self) -> bool:
        return os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3"


def _skip_feast(decorator):
    """``typechecked`` as typeguard has it, except that Feast's own classes and functions pass
    through undecorated (what the decorator does under ``python -O``)."""

    def typechecked(target=None, **options):
        if target is None:
            return lambda t: typechecked(t, **options)
        if getattr(target, "__module__", "").partition(".")[0] == "feast":
            return target
        return decorator(target, **options)

    typechecked.__wrapped__ = decorator
    return typechecked


class _FeastLoader(_Wrapped):
    def exec_module(self, module) -> None:
        import typeguard

        if not hasattr(typeguard.typechecked, "__wrapped__"):
            typeguard.typechecked = _skip_feast(typeguard.typechecked)
        self._loader.exec_module(module)


class _FeastWithoutTypechecks(_Once):
    name, loader = "feast", _FeastLoader

    def wanted(self) -> bool:
        return os.environ.get(FEAST_TYPECHECKS) != "1"


def quiet_tensorflow_import() -> None:
    """Hide TensorFlow's import-time C++ lines (see the module docstring); a no-op once imported."""
    _QuietTensorFlow.install()


def feast_without_typechecks() -> None:
    """Import Feast without typeguard's instrumentation (see the module docstring)."""
    _FeastWithoutTypechecks.install()
