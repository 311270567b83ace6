"""The one logging setup (the CLI and the benchmarks call ``configure``).

The platform's messages (loggers ``twotower``, ``tfrs_models``, ``materialize``, ``validation``,
``serving``) are plain lines on stderr; results are printed on stdout. The dependencies'
output - TensorFlow's C++ log level, absl, Feast, Dask, GX, Python warnings - is off unless
``-v``, which also shows each message's time, logger and level.

TensorFlow's C++ start-up lines are hidden by ``core.imports`` (installed by the package root)
when ``TF_CPP_MIN_LOG_LEVEL`` is 3 - what ``configure`` sets unless ``-v``, inherited by spawned
workers.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from typing import Iterator

PLATFORM = ("twotower", "tfrs_models", "materialize", "validation", "serving")
# py.warnings: Python warnings, routed through logging (``captureWarnings``) because a filter
# cannot hold them: Feast's modules call ``warnings.simplefilter("once", DeprecationWarning)``
# when imported, ahead of any "ignore", so a library imported after Feast warned on stderr.
DEPENDENCIES = ("distributed", "feast", "great_expectations", "absl", "tensorflow", "numexpr", "urllib3", "asyncio",
                "py.warnings", "pymilvus")


def configure(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s %(name)s %(levelname)s: %(message)s" if verbose else "%(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.captureWarnings(True)
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


@contextlib.contextmanager
def printed_as_log(logger: str) -> Iterator[None]:
    """What a dependency ``print``s meanwhile (Feast's materialize lines, with colour codes)
    becomes DEBUG messages of ``logger``: seen with ``-v``, not in a command's output."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            yield
        finally:
            log = logging.getLogger(logger)
            for line in buffer.getvalue().splitlines():
                if line.strip():
                    log.debug(line)
