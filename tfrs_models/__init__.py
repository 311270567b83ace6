"""The two-tower model (TensorFlow Recommenders on Keras 2).

Module map (data flows top to bottom):

- ``records``    - the examples schema (``EXAMPLE_COLUMNS``), ``write_shard``, ``make_dataset``
- ``catalog``    - ``ItemCatalog``: every item's features + click share (uniform easy negatives)
- ``vocab``      - explicit ID vocabularies with OOV hash rows, grown at full updates
- ``features``   - ID tables and hashed feature embeddings
- ``towers``     - dense user / item towers (the user tower takes the ID embedding as input)
- ``tasks``      - listwise / pointwise / pairwise objectives, swappable layers
- ``model``      - ``TwoTowerModel``: writes only ``compute_loss``
- ``checkpoint`` - ``save_model`` / ``load_model`` / ``warm_start`` (vocabulary growth)
- ``training``   - ``train_full`` / ``train_incremental`` / ``IncrementalTrainer``
- ``export``     - user ID embedding table, user tower (SavedModel + numpy), item vectors
- ``evaluate``   - exact recall@K

See twotower/__init__.py: Keras 2 must be selected before TensorFlow is first imported.
"""

import twotower  # noqa: F401  (sets TF_USE_LEGACY_KERAS)
