"""Two-tower recall platform. The package root of the layers (README "Architecture"):
``core`` < ``adapters`` < data (``ingest``, ``stream``; ``validation/``) < model (``tfrs_models/``)
< ``index`` < ``feature_store`` < ``materialize/`` | ``serving/`` < ``report`` < ``pipelines``
< ``research`` < ``cli``, checked by import-linter (setup.cfg, tests/test_layers.py).

TFRS 0.7.7 is written against Keras 2, while TensorFlow 2.21 ships Keras 3 by default.
``TF_USE_LEGACY_KERAS`` must be set before TensorFlow is imported for the first time: it is set
here, once; the other top-level packages (``tfrs_models``, ``materialize``, ``validation``,
``serving``) import this package in their ``__init__``, so users never have to. TensorFlow's
import-time C++ lines are hidden when its log level is 3 (``core.logs``; the CLI sets it unless
``-v``).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from twotower.core.logs import quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()

__version__ = "0.1.0"
