"""Export: ID embedding table, split user tower (SavedModel + numpy), item vectors; recall@K."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from model_data import data, held_out, trained
from tfrs_models.evaluate import recall_at_k
from tfrs_models.export import (
    NumpyUserTower,
    export_user_tower,
    item_vectors,
    load_saved_user_tower,
    user_id_embedding_table,
    user_vectors,
)
from twotower.core.schema import USER_ID_EMBEDDING


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = trained().model
    target = tmp_path_factory.mktemp("export") / "user_tower"
    export_user_tower(model, target)
    return model, target


def test_user_id_embedding_table_matches_the_feast_schema():
    model = trained().model
    table = user_id_embedding_table(model)
    assert len(table) == len(model.user_vocab) and table["user_id"].is_unique
    fields = pa.schema([f for f in USER_ID_EMBEDDING if f.name in ("user_id", "embedding")])
    arrow = pa.Table.from_pandas(table, schema=fields, preserve_index=False)
    assert arrow.schema == fields
    rows = model.user_vocab.rows(table["user_id"].to_numpy()[:5])
    np.testing.assert_array_equal(np.stack(table["embedding"][:5]), model.user_ids.embeddings.numpy()[rows])
    assert table["embedding"][0].dtype == np.float32 and len(table["embedding"][0]) == model.settings.id_embedding_dim


def test_numpy_and_saved_model_user_towers_agree(exported):
    model, target = exported
    assert (target / "saved_model").is_dir() and (target / "user_tower.npz").is_file()
    tower = NumpyUserTower.load(target)
    serve = load_saved_user_tower(target)
    probe = held_out().iloc[:300]
    ids = probe["user_id"].to_numpy()
    known = model.user_vocab.contains(ids)
    assert 0 < known.sum() < len(ids)  # known users and day-3 signups
    table = user_id_embedding_table(model).set_index("user_id")["embedding"]
    emb = np.stack([table[u] if k else tower.oov_embedding(u) for u, k in zip(ids, known)]).astype(np.float32)
    spec = model.spec
    feats = {f.name: np.stack(probe[spec.user.column(f)].to_numpy()) if f.kind == "multi"
             else probe[spec.user.column(f)].to_numpy() for f in spec.user.features}  # fmt: skip
    context = {"hour": probe["hour"].to_numpy(np.int64)}
    fast = tower(emb, feats, context)
    saved = serve(id_embedding=emb, **feats, **context)["user_vector"].numpy()
    reference = user_vectors(model, probe)  # the training graph, ID lookup included
    np.testing.assert_allclose(fast, saved, atol=1e-5)
    np.testing.assert_allclose(fast, reference, atol=1e-5)
    one = tower(emb[7], {k: v[7:8] for k, v in feats.items()}, {"hour": context["hour"][7:8]})  # the one-user path
    assert one.shape == (model.settings.output_dim,)
    np.testing.assert_allclose(one, saved[7], atol=1e-5)


def test_item_vectors_for_batch_scoring():
    model = trained().model
    items = data().items
    ids, vectors = item_vectors(model, items, batch_size=128)  # several batches
    assert ids.dtype == np.int64 and vectors.dtype == np.float32
    assert ids.tolist() == sorted(items["item_id"].unique())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    by_id = dict(zip(ids.tolist(), vectors))
    sub_ids, sub = item_vectors(model, items.iloc[::7])  # same vectors whatever the batch
    np.testing.assert_allclose(sub, np.stack([by_id[i] for i in sub_ids.tolist()]), atol=1e-6)


def test_recall_at_k_is_exact():
    items = np.array([10, 11, 12, 13], dtype=np.int64)
    matrix = np.eye(4, dtype=np.float32)
    queries = np.array([[0.1, 0.9, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=np.float32)
    # item 12: one item scores higher; item 13: one higher, two tied (ties count for it); 99: unknown = miss
    got = recall_at_k(queries, np.array([12, 13, 99]), items, matrix, ks=(1, 2, 4))
    assert got == {1: pytest.approx(0.0), 2: pytest.approx(2 / 3), 4: pytest.approx(2 / 3)}
