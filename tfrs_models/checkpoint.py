"""Checkpoints: weights + vocabularies + item catalogue, and the warm start with vocabulary growth.

A checkpoint directory holds ``model.json`` (format, the settings and the feature spec it was
built with),
``user_vocab.npz`` / ``item_vocab.npz`` (ID -> row), ``catalog.npz`` and ``weights.npz``
(plain named arrays). Plain arrays rather than a TF object graph: a warm start has to reshape
the ID tables anyway, and anybody can open the files with numpy. Written through
``staged_dir`` so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from twotower.core.config import ModelSettings
from twotower.core.errors import UserError
from twotower.core.features import FeatureSpec, check_spec
from twotower.core.files import staged_dir
from tfrs_models.catalog import ItemCatalog
from tfrs_models.model import TwoTowerModel, build_model
from tfrs_models.vocab import IdVocab

FORMAT = "twotower-tfrs-checkpoint/2"
ARCHITECTURE = ("id_embedding_dim", "feature_embedding_dim", "output_dim", "hidden_units", "oov_buckets")
_TOWERS = ("user_tower", "item_tower")


def _tower_weights(model: TwoTowerModel) -> dict[str, np.ndarray]:
    out = {}
    for tower in _TOWERS:
        for i, w in enumerate(getattr(model, tower).get_weights()):
            out[f"{tower}/{i:03d}"] = w
    return out


def save_model(model: TwoTowerModel, directory: str | Path) -> Path:
    """Write the checkpoint atomically (the directory is replaced as a whole)."""
    directory = Path(directory)
    with staged_dir(directory) as stage:
        weights = _tower_weights(model)
        weights["user_ids/embeddings"] = model.user_ids.embeddings.numpy()
        weights["item_ids/embeddings"] = model.item_ids.embeddings.numpy()
        with open(stage / "weights.npz", "wb") as fh:
            np.savez(fh, **weights)
        model.user_vocab.save(stage / "user_vocab.npz")
        model.item_vocab.save(stage / "item_vocab.npz")
        model.catalog.save(stage / "catalog.npz")
        meta = {"format": FORMAT, "settings": model.settings.model_dump(mode="json"), "spec": model.spec.to_dict()}
        (stage / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return directory


def saved_spec(directory: str | Path) -> FeatureSpec:
    """The feature spec a checkpoint was built with (read from its model.json, no model built)."""
    meta_path = Path(directory) / "model.json"
    if not meta_path.is_file():
        raise UserError(f"{directory}: not a model checkpoint (no model.json)")
    return FeatureSpec.from_dict(json.loads(meta_path.read_text())["spec"])


def _check_architecture(saved: dict, settings: ModelSettings, where: Path) -> None:
    for name in ARCHITECTURE:
        want = getattr(settings, name)
        have = saved.get(name)
        if have != want:
            raise UserError(
                f"checkpoint {where} was built with model.{name}={have!r} but the settings say {want!r}; "
                f"change model.{name} back or train a fresh model"
            )


def load_model(directory: str | Path, settings: ModelSettings) -> TwoTowerModel:
    """The checkpoint as a model; training knobs come from ``settings``, shapes must match."""
    directory = Path(directory)
    meta_path = directory / "model.json"
    if not meta_path.is_file():
        raise UserError(f"{directory}: not a model checkpoint (no model.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise UserError(f"{meta_path}: unknown checkpoint format {meta.get('format')!r}, expected {FORMAT!r}")
    _check_architecture(meta["settings"], settings, directory)
    model = build_model(
        settings,
        FeatureSpec.from_dict(meta["spec"]),
        IdVocab.load(directory / "user_vocab.npz"),
        IdVocab.load(directory / "item_vocab.npz"),
        ItemCatalog.load(directory / "catalog.npz"),
    )
    with np.load(directory / "weights.npz") as z:
        for tower in _TOWERS:
            layer = getattr(model, tower)
            layer.set_weights([z[f"{tower}/{i:03d}"] for i in range(len(layer.get_weights()))])
        model.user_ids.embeddings.assign(z["user_ids/embeddings"])
        model.item_ids.embeddings.assign(z["item_ids/embeddings"])
    return model


def _grown_table(old: np.ndarray, old_vocab: IdVocab, fresh: np.ndarray, new_vocab: IdVocab) -> np.ndarray:
    """Fresh table with the known rows and the OOV rows copied from the old one."""
    table = fresh.copy()
    n_old, n_new = len(old_vocab), len(new_vocab)
    table[:n_old] = old[:n_old]
    table[n_new:] = old[n_old:]
    return table


def warm_start(
    previous: TwoTowerModel,
    settings: ModelSettings,
    user_ids: np.ndarray,
    catalog: ItemCatalog,
    seed: int | None = None,
    user_labels: np.ndarray | None = None,
    spec: FeatureSpec | None = None,
) -> TwoTowerModel:
    """A model for the next full update: previous weights, vocabularies grown by the new IDs.

    Known IDs keep their rows (copied bit for bit), new IDs get freshly initialised rows, the OOV
    rows and all dense weights carry over. ``catalog`` replaces the old one (today's items).
    ``user_ids`` are keys, ``user_labels`` their original IDs. ``spec`` (default: the previous
    model's) must declare the same tower inputs (``FeatureSetChanged`` says what changed); its
    sources may differ.
    """
    _check_architecture(previous.settings.model_dump(mode="json"), settings, Path("(previous model)"))
    spec = spec or previous.spec
    check_spec(previous.spec, spec, "the served model")
    user_vocab = previous.user_vocab.grow(user_ids, user_labels)
    item_vocab = previous.item_vocab.grow(catalog.item_id, catalog.labels)
    model = build_model(settings, spec, user_vocab, item_vocab, catalog, seed=seed)
    for tower in _TOWERS:
        getattr(model, tower).set_weights(getattr(previous, tower).get_weights())
    for name in ("user_ids", "item_ids"):
        old, new = getattr(previous, name), getattr(model, name)
        new.embeddings.assign(
            _grown_table(old.embeddings.numpy(), old.vocab, new.embeddings.numpy(), new.vocab)
        )
    return model


def grown_from_oov(
    model: TwoTowerModel, settings: ModelSettings, user_ids: np.ndarray, catalog: ItemCatalog,
    user_labels: np.ndarray | None = None,
) -> TwoTowerModel:
    """The start of an incremental chain: ``model`` knowing ``user_ids`` and ``catalog``'s items,
    each new ID's own row a copy of its OOV row - the vector serving gave that ID until now - so
    its clicks personalise *its* vector from where serving stood (``model`` is untouched)."""
    out = warm_start(model, settings, user_ids, catalog, user_labels=user_labels)
    for name in ("user_ids", "item_ids"):
        old, new = getattr(model, name), getattr(out, name)
        fresh = new.vocab.ids[~old.vocab.contains(new.vocab.ids)]
        if len(fresh):
            table = new.embeddings.numpy()
            table[new.vocab.rows(fresh)] = old.embeddings.numpy()[old.vocab.oov_rows(fresh)]
            new.embeddings.assign(table)
    return out


def clone_model(model: TwoTowerModel, settings: ModelSettings | None = None) -> TwoTowerModel:
    """An independent copy (same vocabularies, catalogue and weights)."""
    copy = build_model(settings or model.settings, model.spec, model.user_vocab, model.item_vocab, model.catalog)
    for a, b in zip(model.variables, copy.variables):
        b.assign(a)
    return copy
