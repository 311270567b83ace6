"""The daily and intraday cycles: ``full_update`` (validate -> prepare -> train -> export ->
evaluate -> publish, one module per concern: ``day``, ``full_update_steps``, ``full_update``)
and ``incremental`` (the stream consumer and its chain). Everything they train goes through
``tfrs_models``; the replay experiment calls the same functions."""
