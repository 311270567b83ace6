"""Research apart from the platform: the simulator (``simulate``: a world with known tastes)
and the replay experiment (``replay``: the seed's claims, day by day on a simulated clock).

Only the CLI imports this package; pipelines, model, index and serving never do
(tests/test_layers.py).
"""
