"""The item index: Annoy files built from (item ID, vector) pairs, tuned against exact top-k,
read memory-mapped; one flat file or hash shards behind one ``open_index``.

Pure Annoy + numpy: the batch side builds it (shards as Dask tasks, ``shard_build``), serving
reads it; neither Dask nor TensorFlow is imported here.
"""
