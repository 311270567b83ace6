"""Dask tokens of list columns (twotower/adapters/dask_tokens.py): equal data -> equal token, any change -> new."""

import numpy as np
import pandas as pd
from dask.base import tokenize

import twotower.adapters.dask_tokens  # noqa: F401


def _frame(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(n), "tags": [rng.integers(0, 100, 3) for _ in range(n)],
                         "emb": [rng.normal(size=4).astype(np.float32) for _ in range(n)]})  # fmt: skip


def test_equal_frames_share_a_token_and_every_change_gives_a_new_one():
    from dask.base import normalize_token

    assert getattr(normalize_token.dispatch(np.ndarray), "_twotower", False)  # ours is the one in use
    base = tokenize(_frame())
    assert tokenize(_frame()) == base  # deterministic across separately built objects
    for change in (
        lambda d: d.at[5, "tags"].__setitem__(0, 99),  # a value
        lambda d: d.__setitem__("tags", [t[:2] for t in d["tags"]]),  # lengths
        lambda d: d.__setitem__("emb", [e.astype(np.float64) for e in d["emb"]]),  # dtype
        lambda d: d.at.__setitem__((7, "emb"), d.at[7, "emb"][::-1].copy()),  # order inside a list
    ):
        d = _frame()
        change(d)
        assert tokenize(d) != base


def test_other_object_columns_keep_dasks_own_tokens():
    strings = pd.DataFrame({"s": ["a", "b", None]})
    assert tokenize(strings) == tokenize(pd.DataFrame({"s": ["a", "b", None]}))
    assert tokenize(strings) != tokenize(pd.DataFrame({"s": ["a", "c", None]}))
