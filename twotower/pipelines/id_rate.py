"""The ID tables' learning rate, chosen by the backfill on the history and kept by the chain.

How far one click should move a user's ID row depends on the data, not on the code: a feed
whose users click dozens of items a day wants big steps (the simulator: recall@100 0.845 at
0.05, 0.784 at 0.01), a log where most users rate a handful of items wants small ones (a row
moved by one click is noise: MovieTweetings 100K 0.327 at 0.05, 0.367 at 0.01). So a backfill
with several ``full_update.backfill_id_rates`` fits one model per rate on the history but its
last ``VALIDATION_DAYS`` days, scores each by exact recall@100 of those days' clicks of users
with an own row, and trains the generation with the best one. Every full update records the
rate it used (``training.json``) and the next one takes it from the served generation, unless
the settings name ``model.id_learning_rate`` themselves.
"""

from __future__ import annotations

import json
import logging
from datetime import date

import numpy as np

from tfrs_models.evaluate import exact_ranks
from tfrs_models.export import item_vectors, user_vectors
from tfrs_models.records import example_columns, make_dataset
from tfrs_models.training import train_full
from twotower.core import generations as gens
from twotower.core.config import ModelSettings, Settings
from twotower.core.encode import id_keys
from twotower.core.workspace import Workspace

logger = logging.getLogger(__name__)

VALIDATION_DAYS = 2


def inherited(settings: Settings, ws: Workspace, served: gens.Manifest | None) -> ModelSettings:
    """The model settings of a full update: ``id_learning_rate`` from the served generation's
    training unless the settings set it."""
    if served is None or "id_learning_rate" in settings.model.model_fields_set:
        return settings.model
    path = gens.directory(ws, served.id) / "training.json"
    rate = json.loads(path.read_text()).get("id_learning_rate") if path.exists() else None
    return settings.model.model_copy(update={"id_learning_rate": rate}) if rate else settings.model


def _columns(shards: list, settings: ModelSettings, spec) -> dict[str, np.ndarray]:
    """The user-side columns and the clicked item of every example in ``shards``."""
    columns = example_columns(spec, settings.hard_negatives_per_example)
    wanted = ("user_id", "item_id", *(spec.user.column(f) for f in spec.user.features), *spec.context)
    parts: dict[str, list] = {c: [] for c in wanted}
    for batch in make_dataset(shards, 4096, None, columns=columns):
        for c in wanted:
            parts[c].append(batch[c].numpy())
    return {c: np.concatenate(v) for c, v in parts.items()}


def wanted(settings: Settings, days: int) -> bool:
    """Whether a backfill of ``days`` days chooses the rate (several rates, none set, enough days)."""
    rates = set(settings.full_update.backfill_id_rates)
    return len(rates) > 1 and "id_learning_rate" not in settings.model.model_fields_set and days > VALIDATION_DAYS


def choose(settings: Settings, ws: Workspace, prepared: dict[date, object], spec, fit: dict, items, epochs: int) -> dict:
    """``{"chosen": rate, "recall@100": {rate: recall}}`` over ``full_update.backfill_id_rates``
    (``wanted``). ``fit``: the keyword arguments of ``train_full`` but the data, with the users
    that have clicks before the validation days; ``items``: the newest item rows."""
    rates = list(dict.fromkeys(settings.full_update.backfill_id_rates))
    days = list(prepared)

    def shards(of: list[date]) -> list:
        return [p for d in of for p in prepared[d].shard_paths(ws.tfrecords_dir(d))]

    fit_shards, check = shards(days[:-VALIDATION_DAYS]), _columns(shards(days[-VALIDATION_DAYS:]), settings.model, spec)
    scores = {}
    keys = None  # the items' keys, in the order item_vectors returns them (the same for every rate)
    for rate in rates:
        model = train_full(settings.model.model_copy(update={"id_learning_rate": rate}), fit_shards, epochs=epochs, **fit).model
        warm = model.user_vocab.contains(check["user_id"])
        labels, vectors = item_vectors(model, items)
        keys = id_keys(labels, spec.item.id_type, "items") if keys is None else keys
        ranks = exact_ranks(user_vectors(model, {c: v[warm] for c, v in check.items()}), check["item_id"][warm], keys, vectors)
        scores[rate] = round(float((ranks < 100).mean()) if len(ranks) else 0.0, 4)
        logger.info(f"train: id_learning_rate {rate:g}: recall@100 {scores[rate]:.4f} on {int(warm.sum()):,} clicks of "
                    f"users with an own row, last {VALIDATION_DAYS} days")  # fmt: skip
    chosen = max(rates, key=lambda r: (scores[r], r == settings.model.id_learning_rate))
    return {"chosen": chosen, "recall@100": {f"{r:g}": s for r, s in scores.items()}}
