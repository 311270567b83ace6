"""Where the project relies on a dependency's private internals, each in one small module with
a test that fails loudly when the pinned version changes them (tests/test_adapters.py).

Above ``core`` only; the layers that need an adapter import it from here.
"""
