"""The ID tables learn in the full update, the user tower uses them, and training is reproducible.

Baselines are measured in the same test: the same training with the ID tables stepped like the
dense layers (Keras' default Adagrad accumulator, what the platform did before the ID tables got
their own optimiser settings).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from materialize.examples import item_frequencies
from model_data import data, default_spec, held_out, small_settings
from tfrs_models.catalog import ItemCatalog
from tfrs_models.evaluate import evaluate_model, id_diagnostics
from tfrs_models.training import train_full

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow  # started first (conftest): a long file must not end the run alone


def _train(**overrides):
    d = data()
    s = small_settings(**overrides)
    users, items = d.known_before(d.days[2])
    events = pd.concat([d.events[d.days[0]], d.events[d.days[1]]])
    spec = default_spec()
    catalog = ItemCatalog.from_frames(items, spec.item, item_frequencies(events, items["item_id"]))
    train = pd.concat([d.examples[d.days[0]], d.examples[d.days[1]]], ignore_index=True)
    return train_full(s, train, spec=spec, user_ids=users["user_id"].to_numpy(), catalog=catalog, seed=1).model


def test_full_update_trains_the_id_tables_and_the_user_tower_uses_them():
    d = data()
    heldout = held_out()
    known = heldout.loc[heldout["user_id"].isin(d.known_before(d.days[2])[0]["user_id"])]
    new = _train()
    old = _train(id_initial_accumulator=0.1, id_learning_rate=0.1)  # stepped like the dense layers
    got, base = id_diagnostics(new, known), id_diagnostics(old, known)
    # The platform's rows move much further from their initialisation than the baseline's and
    # carry a clearly larger part of the user vector (swapping the ID changes it more).
    assert got["user_id_rms_over_init"] > 1.5 * base["user_id_rms_over_init"], (got, base)
    assert got["id_swap_cosine"] < base["id_swap_cosine"] - 0.1, (got, base)
    # ... and it is not bought with held-out recall.
    items = d.known_before(d.days[2])[1]
    assert evaluate_model(new, known, items)[100] >= evaluate_model(old, known, items)[100], "recall@100 dropped"


def test_id_diagnostics_flag_an_id_part_that_moves_nothing():
    model = _train()
    known = held_out().head(300)
    before = id_diagnostics(model, known)
    table = model.user_ids.embeddings.numpy()
    model.user_ids.embeddings.assign(np.tile(table.mean(axis=0), (len(table), 1)))  # every user one row
    after = id_diagnostics(model, known)
    assert after["id_swap_cosine"] > 0.9999 > before["id_swap_cosine"], (before, after)


TRAIN_AND_PRINT = """
import hashlib, json, sys
sys.path[:0] = [{tests!r}, {root!r}]
from test_model_id_learning import _train
model = _train()
digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.variables)).hexdigest()
print(json.dumps({{"digest": digest}}))
"""


def test_the_same_seed_trains_the_same_model_in_two_processes():
    """This process (which trained other models before) and a fresh interpreter."""
    code = TRAIN_AND_PRINT.format(tests=str(HERE), root=str(HERE.parent))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    model = _train()
    here = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.variables)).hexdigest()
    assert json.loads(out.stdout.strip().splitlines()[-1])["digest"] == here
