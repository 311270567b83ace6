"""See twotower/__init__.py: Keras 2 must be selected before TensorFlow is first imported."""

import twotower  # noqa: F401  (sets TF_USE_LEGACY_KERAS)
