"""The one logging setup (the CLI and the benchmarks call ``configure``).

The platform's messages (loggers ``twotower``, ``tfrs_models``, ``materialize``, ``validation``,
``serving``) are plain lines on stderr; results are printed on stdout. The dependencies'
output - TensorFlow's C++ log level, absl, Feast, Dask, GX, Python warnings - is off unless
``-v``, which also shows each message's time, logger and level.

TensorFlow's C++ start-up lines ("All log messages before absl::InitializeLog() ...", "Could not
find cuda drivers ...") are written to file descriptor 2 while ``import tensorflow`` runs, before
any log level is read. ``quiet_tensorflow_import`` (installed by the package root) sends that
descriptor to a temporary file for the duration of the first ``import tensorflow`` when
``TF_CPP_MIN_LOG_LEVEL`` is 3 - what ``configure`` sets unless ``-v``, inherited by spawned
workers - and replays what it caught if the import fails.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import tempfile
import warnings

PLATFORM = ("twotower", "tfrs_models", "materialize", "validation", "serving")
DEPENDENCIES = ("distributed", "feast", "great_expectations", "absl", "tensorflow", "numexpr", "urllib3", "asyncio")


def configure(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s %(name)s %(levelname)s: %(message)s" if verbose else "%(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in PLATFORM:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    # Before TensorFlow, Dask or a worker process starts: they read these at import.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # inherited by spawned Dask workers
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    warnings.filterwarnings("ignore")
    for name in DEPENDENCIES:
        logging.getLogger(name).setLevel(logging.ERROR)


class _QuietLoader(importlib.abc.Loader):
    """Wraps TensorFlow's own loader; runs its module code with descriptor 2 sent to a file."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec):
        return self._loader.create_module(spec)

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

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow" or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
            return None
        sys.meta_path.remove(self)  # once: the real finder below answers from here on
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_import() -> None:
    """Hide TensorFlow's import-time C++ lines (see the module docstring); a no-op once imported."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowFinder())
