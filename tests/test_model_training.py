"""Each objective learns the simulated world; unseen users and items are still served."""

from __future__ import annotations

import numpy as np
import pytest

from model_data import data, held_out, small_settings, trained
from tfrs_models.evaluate import evaluate_model
from tfrs_models.export import item_vectors, user_vectors
from tfrs_models.model import build_model


def untrained_like(model):
    return build_model(model.settings, model.spec, model.user_vocab, model.item_vocab, model.catalog, seed=123)


@pytest.mark.parametrize("objective", ["listwise", "pointwise", "pairwise"])
def test_objective_beats_a_random_model_by_a_wide_margin(objective):
    run = trained(objective)
    assert run.examples == sum(len(data().examples[d]) for d in data().days[:2])  # exactly one epoch
    test, items = held_out(), data().items
    got = evaluate_model(run.model, test, items)
    chance = evaluate_model(untrained_like(run.model), test, items)
    assert got[100] >= 2 * chance[100] and got[100] >= chance[100] + 0.25, (got, chance)
    assert got[10] >= 4 * chance[10], (got, chance)


def test_unseen_users_are_served_from_oov_rows_and_profile():
    model = trained("listwise").model
    test = held_out()
    new = ~model.user_vocab.contains(test["user_id"].to_numpy())
    assert new.sum() >= 30  # day-3 signups, unknown to the model
    vectors = user_vectors(model, test[new])
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the OOV row is shared by hash, the profile tells users apart
    rows = model.user_vocab.rows(test.loc[new, "user_id"].to_numpy())
    assert (rows >= len(model.user_vocab)).all()
    assert len(np.unique(vectors.round(5), axis=0)) > len(np.unique(rows))
    got = evaluate_model(model, test[new], data().items)
    chance = evaluate_model(untrained_like(model), test[new], data().items)
    assert got[100] >= chance[100] + 0.15, (got, chance)


def test_unseen_items_get_vectors():
    model = trained("pairwise").model
    items = data().items
    new = ~model.item_vocab.contains(items["item_id"].to_numpy())
    assert new.sum() >= 10  # created on day 3
    ids, vectors = item_vectors(model, items[new])
    assert list(ids) == items.loc[new, "item_id"].tolist()
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(np.unique(vectors.round(5), axis=0)) == len(ids)  # features tell them apart


def test_settings_drive_the_architecture():
    model = build_model(
        small_settings(output_dim=8, hidden_units=[12, 10]), trained().model.spec, trained().model.user_vocab,
        trained().model.item_vocab, trained().model.catalog,
    )  # fmt: skip
    assert user_vectors(model, held_out().iloc[:3]).shape == (3, 8)
    assert [layer.units for layer in model.user_tower.mlp.hidden] == [12, 10]


def test_trains_without_hard_or_uniform_negatives():
    from materialize.examples import build_examples
    from tfrs_models.training import train_full

    d = data()
    s = small_settings(objective="pairwise", hard_negatives_per_example=0, num_easy_negatives=0)
    spec = trained().model.spec
    ex = build_examples(d.events[d.days[0]], d.users, d.items, spec=spec, hard_negatives=0)
    assert ex["hard_item_id"].map(len).eq(0).all()
    run = train_full(s, ex, spec=spec, user_ids=d.users["user_id"].to_numpy(), catalog=trained().model.catalog, seed=0)
    assert run.examples == len(ex) and run.mean_loss > 0.1  # in-batch negatives carry the loss
