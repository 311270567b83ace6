"""Two-tower recall platform. The package root of the layers (README "Architecture"):
``core`` < ``adapters`` < data (``ingest``, ``stream``; ``validation/``) < model (``tfrs_models/``)
< ``index`` < ``feature_store`` < ``materialize/`` | ``serving/`` < ``report`` < ``pipelines``
< ``research`` < ``cli``, checked by import-linter (setup.cfg, tests/test_layers.py).

TFRS 0.7.7 is written against Keras 2, while TensorFlow 2.21 ships Keras 3 by default.
``TF_USE_LEGACY_KERAS`` must be set before TensorFlow is imported for the first time: it is set
here, once; the other top-level packages (``tfrs_models``, ``materialize``, ``validation``,
``serving``) import this package in their ``__init__``, so users never have to. TensorFlow's
import-time C++ lines are hidden when its log level is 3 (the CLI sets it unless ``-v``), and
Feast is imported without typeguard's instrumentation of its classes (5 of its 7 s): both hooks
live in ``core.imports``.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from twotower.core.imports import feast_without_typechecks, quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()
feast_without_typechecks()

__version__ = "0.1.0"
