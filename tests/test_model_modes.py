"""Full mode (warm start with vocabulary growth), incremental mode, checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from materialize.examples import item_frequencies
from model_data import data, default_spec, held_out, small_settings, trained
from tfrs_models.catalog import ItemCatalog
from tfrs_models.checkpoint import clone_model, load_model, save_model, warm_start
from tfrs_models.export import item_vectors, user_vectors
from tfrs_models.training import IncrementalTrainer, train_full, train_incremental
from twotower.core.errors import UserError


def snapshot(variables) -> list[np.ndarray]:
    return [v.numpy().copy() for v in variables]


@pytest.fixture(scope="module")
def today():
    """Day 3 as the next full update sees it: every user and item, the day's frequencies."""
    d = data()
    catalog = ItemCatalog.from_frames(d.items, default_spec().item, item_frequencies(d.events[d.days[2]], d.items["item_id"]))
    return d.users["user_id"].to_numpy(), catalog


def test_warm_start_keeps_known_rows_and_adds_new_ones(today):
    user_ids, catalog = today
    previous = trained().model
    before = snapshot(previous.variables)
    model = warm_start(previous, small_settings(), user_ids, catalog)
    for old, new in ((previous.user_ids, model.user_ids), (previous.item_ids, model.item_ids)):
        n_old, n_new = len(old.vocab), len(new.vocab)
        assert n_new > n_old  # vocabulary grew by the day's new IDs
        np.testing.assert_array_equal(new.vocab.ids[:n_old], old.vocab.ids)  # rows never move
        table_old, table_new = old.embeddings.numpy(), new.embeddings.numpy()
        np.testing.assert_array_equal(table_new[:n_old], table_old[:n_old])  # known rows copied
        np.testing.assert_array_equal(table_new[n_new:], table_old[n_old:])  # OOV rows carried over
        fresh = table_new[n_old:n_new]
        assert np.abs(fresh).max() > 0 and len(np.unique(fresh, axis=0)) == n_new - n_old  # fresh rows
    for a, b in zip(previous.user_tower.get_weights() + previous.item_tower.get_weights(),
                    model.user_tower.get_weights() + model.item_tower.get_weights()):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, previous.variables))  # previous untouched
    assert model.user_vocab.contains(user_ids).all() and model.item_vocab.contains(catalog.item_id).all()


def test_full_update_trains_one_epoch_from_the_previous_full_model(today):
    user_ids, catalog = today
    previous = trained().model
    day3 = held_out()
    run = train_full(small_settings(), day3, spec=default_spec(), user_ids=user_ids, catalog=catalog, previous=previous, seed=2)
    assert run.examples == len(day3) and run.steps == -(-len(day3) // small_settings().batch_size)
    assert run.model.user_vocab.contains(day3["user_id"].to_numpy()).all()  # new users got their own rows
    # it continued from the previous model: its vectors are far closer to it than a fresh start's
    probe = held_out().iloc[:200]
    moved = np.abs(user_vectors(run.model, probe) - user_vectors(previous, probe)).mean()
    scratch = train_full(small_settings(), day3, spec=default_spec(), user_ids=user_ids, catalog=catalog, seed=2).model
    assert moved < np.abs(user_vectors(scratch, probe) - user_vectors(previous, probe)).mean()


def test_incremental_moves_only_the_touched_id_embeddings():
    full = trained().model
    full_before = snapshot(full.variables)
    stream = held_out().iloc[:600]  # the first events of day 3, in time order
    run = train_incremental(full, stream, small_settings())
    model = run.model
    assert model is not full
    assert run.examples == len(stream)
    for a, b in zip(full.dense_variables(), model.dense_variables()):
        assert a.name == b.name
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)  # bitwise frozen
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(full_before, full.variables))  # full model untouched

    touched = np.unique(stream["user_id"].to_numpy())
    rows = full.user_vocab.rows(touched)
    old, new = full.user_ids.embeddings.numpy(), model.user_ids.embeddings.numpy()
    assert (np.abs(new[rows] - old[rows]).max(axis=1) > 0).all()  # every touched row moved
    untouched = np.setdiff1d(np.arange(len(full.user_vocab)), rows)
    np.testing.assert_array_equal(new[untouched], old[untouched])

    out = run.touched
    assert out["user_id"].tolist() == touched.tolist()
    np.testing.assert_array_equal(np.stack(out["embedding"]), new[rows])
    newest = stream.groupby("user_id")["event_timestamp"].max()
    assert str(out["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert out["event_timestamp"].astype("int64").tolist() == newest.loc[touched].tolist()


def test_incremental_on_an_empty_micro_batch_touches_nothing():
    run = train_incremental(trained().model, held_out().iloc[:0], small_settings())
    assert run.examples == 0 and run.touched.empty
    assert list(run.touched.columns) == ["user_id", "embedding", "event_timestamp"]


def test_incremental_trainer_continues_across_micro_batches():
    trainer = IncrementalTrainer(clone_model(trained().model), small_settings())
    stream = held_out().iloc[600:900]
    first = trainer.train(stream.iloc[:150])
    table = trainer.model.user_ids.embeddings.numpy().copy()
    second = trainer.train(stream.iloc[150:])
    assert first.examples == 150 and second.examples == 150
    changed = np.abs(trainer.model.user_ids.embeddings.numpy() - table).max(axis=1) > 0
    rows = trainer.model.user_vocab.rows(np.unique(stream.iloc[150:]["user_id"]))
    assert changed[rows].all() and changed.sum() <= len(rows) + trainer.model.user_vocab.oov_buckets


def test_checkpoint_round_trip_and_architecture_check(tmp_path):
    model = trained("pointwise").model
    target = tmp_path / "full"
    save_model(model, target)
    save_model(model, target)  # overwriting is atomic and leaves no staging directories behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    loaded = load_model(target, model.settings)
    np.testing.assert_array_equal(loaded.user_vocab.ids, model.user_vocab.ids)
    np.testing.assert_array_equal(loaded.catalog.prob, model.catalog.prob)
    for a, b in zip(model.variables, loaded.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    probe = held_out().iloc[:50]
    np.testing.assert_array_equal(user_vectors(loaded, probe), user_vectors(model, probe))
    np.testing.assert_array_equal(item_vectors(loaded, data().items)[1], item_vectors(model, data().items)[1])
    with pytest.raises(UserError, match="model.output_dim=16 but the settings say 32"):
        load_model(target, small_settings(output_dim=32))
    with pytest.raises(UserError, match="not a model checkpoint"):
        load_model(tmp_path / "nothing", model.settings)


def test_touched_embeddings_cover_unknown_users_with_their_oov_row():
    from tfrs_models.training import touched_user_embeddings

    model = trained().model
    unknown = np.array([10**9 + 3], dtype=np.int64)
    table = touched_user_embeddings(model, unknown)
    row = len(model.user_vocab) + (10**9 + 3) % model.user_vocab.oov_buckets
    np.testing.assert_array_equal(table["embedding"][0], model.user_ids.embeddings.numpy()[row])
    assert isinstance(table, pd.DataFrame) and table["embedding"][0].dtype == np.float32
