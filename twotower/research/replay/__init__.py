"""The day-replay experiment (``twotower replay``): do the seed's update strategies pay off?

Simulated days are replayed step by step on a simulated clock, in-process, for five training
strategies on identical data (``strategies``); at every step each strategy's channel is
measured on the next step's clicks against the simulator's oracle. Modules, data flowing down:

- ``world``      - a simulated world as replay days (examples built once, shared by all)
- ``models``     - the training moves: full update (shuffled / time-ordered), incremental chain
- ``channel``    - exact ranks of the clicked items under a strategy's channel, and the oracle's
- ``experiment`` - one seed's replay loop -> a per-click table of ranks
- ``metrics``, ``claims``, ``results`` - per-click table -> numbers, verdicts (pure)
- ``tables``     - markdown table, README block
- ``run``        - wiring: worlds per seed, caching, results files, report, README
"""


from twotower.research.replay.run import replay_dir, results_path, run

__all__ = ["replay_dir", "results_path", "run"]
