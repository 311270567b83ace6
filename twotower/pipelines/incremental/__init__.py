"""The intraday incremental update (the seed's "增量更新"): stream -> ID embeddings -> online store.

``run(settings, ws, follow=..., ...)`` consumes the event stream (twotower/stream/) in time
order, trains only the ID embedding tables of the served generation's model (its chain, see
chain.py), pushes the trained users' embeddings into the Feast online store (push.py, newest
wins) and records freshness (freshness.py). State + stream position are durable together
(state.py), so a crash never loses or repeats training.
"""


from twotower.pipelines.incremental.updater import IncrementalSummary, run

__all__ = ["IncrementalSummary", "run"]
