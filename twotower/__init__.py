"""Two-tower recall platform: orchestration (config, CLI, simulator, ingest, daily cycle).

TFRS 0.7.7 is written against Keras 2, while TensorFlow 2.21 ships Keras 3 by default.
``TF_USE_LEGACY_KERAS`` must be set before TensorFlow is imported for the first time, so every
package of this project sets it in its ``__init__`` (users never have to).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
