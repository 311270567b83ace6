"""The bottom layer: typed settings, errors, workspace paths, table schemas, generations (the
published pointer and manifests), time helpers, the one atomic writer and the one file lock.

It imports nothing else of the project (tests/test_layers.py); every other layer builds on it.
"""
