"""Model quality on real data: a vendored MovieTweetings snapshot, every strategy on the same clicks.

Protocol (fixed; no strategy, user or seed is picked after the fact):

* **Split.** Ratings in time order; the *cut* is the UTC day holding the 80% quantile of the
  rating times. Days before it are history; every day from it on is a test day.
* **Daily serving.** Each test day *t* is answered with what was known at the end of day
  *t-1*: a strategy's top-K list per (user, day), and each of the day's clicks is a hit at
  K if its item is in the user's top-K. Recall@K = hits / clicks; NDCG@100 with the one
  clicked item as the relevant one.
* **Strategies.**
  - ``popularity``: the items clicked most over all days before *t*.
  - ``popularity_recent``: the same with each click counted ``exp(-age / tau)``, ``tau`` (days)
    chosen on the validation split among ``DECAY_DAYS``: what is popular now.
  - ``tfrs_id_only``: the TFRS basic-retrieval tutorial's recipe (user and item ID embeddings
    of 32, ``tfrs.tasks.Retrieval``, Adagrad 0.1, 3 epochs), trained once on the history.
  - ``project_default``: the platform as a user runs it - ``twotower ingest``, ``twotower
    backfill`` over the history (which picks the ID tables' learning rate on its last two
    days), then every test day's ``full-update`` after it is served - answered through the
    serving ``Retriever`` (embedding, OOV/profile or popular path). The data set's feature repo
    declares the platform's item popularity view.
  - ``project_tuned``: the same with settings chosen on a validation split (the last two
    history days as test days, the cycle run on the days before them), never on the test days.
* **Splits of the clicks.** ``warm`` users clicked before day *t*, ``cold`` users did not;
  ``new_items`` are items nobody clicked before *t*. ``seen`` excluded: a user's items
  clicked before *t* are removed from their list and the list refilled to K.

``python -m bench.bench_real_data`` writes ``bench/results/real_data.json`` and prints the
README table (also ``bench/results/real_data.md``).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from bench import RESULTS, write_result
from bench.movietweetings import SNAPSHOTS, events_csv, movies_csv, settings as snapshot_settings

K = (10, 50, 100)
TOP = max(K)
CUT_QUANTILE = 0.8
VALIDATION_DAYS = 2
DECAY_DAYS = (1, 3, 7, 14, 30)  # popularity_recent's time constants, one chosen on the validation split
# The candidates the tuned run chooses from, each a settings override (section -> key -> value).
CANDIDATES: dict[str, dict] = {
    "default": {},
    "backfill_epochs_6": {"full_update": {"backfill_epochs": 6}},
    "temperature_0.1": {"model": {"temperature": 0.1}},
    "id_rate_0.01": {"model": {"id_learning_rate": 0.01}},
}


@dataclass
class Split:
    events: pd.DataFrame  # user_id, item_id, event_timestamp (s), day
    history: list[date]
    test: list[date]

    def before(self, day: date) -> pd.DataFrame:
        return self.events[self.events["day"] < day]

    def on(self, day: date) -> pd.DataFrame:
        return self.events[self.events["day"] == day]


def split(events: pd.DataFrame, validation: bool = False) -> Split:
    ev = events.assign(event_timestamp=events["event_timestamp"].astype(np.int64))
    ev = ev.assign(day=pd.to_datetime(ev["event_timestamp"], unit="s", utc=True).dt.date).sort_values("event_timestamp")
    days = sorted(ev["day"].unique())
    cut = pd.to_datetime(int(ev["event_timestamp"].quantile(CUT_QUANTILE)), unit="s", utc=True).date()
    history, test = [d for d in days if d < cut], [d for d in days if d >= cut]
    if validation:  # the last history days play the test days; the real test days are not used
        history, test = history[:-VALIDATION_DAYS], history[-VALIDATION_DAYS:]
        ev = ev[ev["day"] <= test[-1]]
    return Split(ev.reset_index(drop=True), history, test)


# --- scoring ---------------------------------------------------------------------------------
def _ranks(lists: dict, clicks: pd.DataFrame) -> np.ndarray:
    """Rank (0-based) of each click's item in its user's list, -1 when not in it."""
    out = np.full(len(clicks), -1, np.int64)
    for n, (user, item) in enumerate(zip(clicks["user_id"], clicks["item_id"])):
        items = lists.get(user)
        if items is not None:
            where = np.flatnonzero(np.asarray(items, dtype=object) == item)
            out[n] = where[0] if len(where) else -1
    return out


def _excluding_seen(ranked: list, seen: set, k: int) -> list:
    return [i for i in ranked if i not in seen][:k]


def score_day(lists_for: callable, sp: Split, day: date) -> pd.DataFrame:
    """One test day: per click its rank with and without the user's seen items (``lists_for``:
    users -> {user: ranked item list, at least TOP + seen long})."""
    clicks = sp.on(day)
    past = sp.before(day)
    seen = past.groupby("user_id")["item_id"].agg(set).to_dict()
    users = sorted(clicks["user_id"].unique())
    lists = lists_for(users, {u: len(seen.get(u, ())) for u in users})
    plain = {u: list(v)[:TOP] for u, v in lists.items()}
    excluded = {u: _excluding_seen(list(v), seen.get(u, set()), TOP) for u, v in lists.items()}
    known_items = set(past["item_id"])
    return pd.DataFrame({
        "day": day, "user_id": clicks["user_id"].to_numpy(), "item_id": clicks["item_id"].to_numpy(),
        "rank": _ranks(plain, clicks), "rank_unseen": _ranks(excluded, clicks),
        "warm": clicks["user_id"].isin(seen).to_numpy(), "new_item": ~clicks["item_id"].isin(known_items).to_numpy(),
    })  # fmt: skip


def summarise(scored: pd.DataFrame) -> dict:
    def metrics(ranks: np.ndarray) -> dict:
        if len(ranks) == 0:
            return {"clicks": 0}
        hit = {f"recall@{k}": round(float(np.mean((ranks >= 0) & (ranks < k))), 4) for k in K}
        gain = np.where((ranks >= 0) & (ranks < TOP), 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
        return {"clicks": int(len(ranks)), **hit, f"ndcg@{TOP}": round(float(gain.mean()), 4)}

    parts = {"all": scored, "warm_users": scored[scored.warm], "cold_users": scored[~scored.warm],
             "new_items": scored[scored.new_item]}  # fmt: skip
    out = {name: metrics(part["rank"].to_numpy()) for name, part in parts.items()}
    out["seen_excluded"] = {name: metrics(part["rank_unseen"].to_numpy()) for name, part in parts.items()}
    return out


# --- strategies ------------------------------------------------------------------------------
def popularity(sp: Split, decay_days: float | None = None) -> pd.DataFrame:
    """The items clicked most before each test day; with ``decay_days``, each click counted
    ``exp(-age / decay_days)`` (age in days at the start of the test day): what is popular now."""

    def lists_for(day):
        past = sp.before(day)
        if decay_days is None:
            order = past["item_id"].value_counts(sort=True).index.to_numpy()
        else:
            age = (pd.Timestamp(day, tz="UTC").timestamp() - past["event_timestamp"]) / 86_400
            weight = pd.Series(np.exp(-age.to_numpy() / decay_days), index=past.index)
            order = weight.groupby(past["item_id"]).sum().sort_values(ascending=False, kind="stable").index.to_numpy()

        def answer(users, seen_counts):
            return {u: order[: TOP + seen_counts[u]] for u in users}

        return answer

    return pd.concat([score_day(lists_for(day), sp, day) for day in sp.test], ignore_index=True)


def tfrs_id_only(sp: Split, epochs: int = 3, dim: int = 32, seed: int = 0) -> pd.DataFrame:
    """The TFRS basic-retrieval tutorial's model on the history (IDs only), scored over the
    items it knows with exact top-K."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    train = sp.events[sp.events["day"] < sp.test[0]]
    users, items = np.unique(train["user_id"]), np.unique(train["item_id"])

    class Model(tfrs.Model):
        def __init__(self):
            super().__init__()
            self.user = keras.Sequential([keras.layers.StringLookup(vocabulary=users), keras.layers.Embedding(len(users) + 1, dim)])
            self.item = keras.Sequential([keras.layers.StringLookup(vocabulary=items), keras.layers.Embedding(len(items) + 1, dim)])
            self.task = tfrs.tasks.Retrieval()

        def compute_loss(self, features, training=False):
            return self.task(self.user(features["user_id"]), self.item(features["item_id"]))

    model = Model()
    model.compile(optimizer=keras.optimizers.Adagrad(learning_rate=0.1))
    data = tf.data.Dataset.from_tensor_slices({"user_id": train["user_id"].to_numpy(), "item_id": train["item_id"].to_numpy()})
    model.fit(data.shuffle(len(train), seed=seed).batch(128), epochs=epochs, verbose=0)
    item_vectors = model.item(tf.constant(items)).numpy()

    def answer(batch, seen_counts):
        scores = model.user(tf.constant(np.asarray(batch, dtype=object))).numpy() @ item_vectors.T
        order = np.argsort(-scores, axis=1, kind="stable")
        return {u: items[order[n, : TOP + seen_counts[u]]] for n, u in enumerate(batch)}

    return pd.concat([score_day(answer, sp, day) for day in sp.test], ignore_index=True)


def _toml(overrides: dict, snapshot: str) -> str:
    """The benchmark workspace's settings: the data set's own, with ``overrides`` merged in."""
    import tomllib

    settings = tomllib.loads(snapshot_settings(snapshot))
    for section, values in overrides.items():
        settings.setdefault(section, {}).update(values)
    lines = [f"feature_repo = {json.dumps(settings.pop('feature_repo'))}"]
    for section, values in settings.items():
        lines += ["", f"[{section}]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def project(sp: Split, overrides: dict, root: Path, files: tuple[Path, Path], snapshot: str) -> tuple[pd.DataFrame, dict]:
    """The platform's own daily cycle: ingest, backfill the history, serve each test day from
    the generation before it, then run that day's full update."""
    from serving.retriever import Retriever
    from twotower import feature_store
    from twotower.core.config import load_settings
    from twotower.core.workspace import Workspace
    from twotower.ingest.job import ingest
    from twotower.pipelines.full_update import backfill, run

    root.mkdir(parents=True)
    (root / "twotower.toml").write_text(_toml(overrides, snapshot))
    settings = load_settings(workspace=root)
    ws = Workspace(settings.workspace)
    movies, events = files
    keep = sp.events[["user_id", "item_id"]].assign(event_type="click", event_timestamp=sp.events["event_timestamp"])
    keep.to_csv(root / "events.csv", index=False)  # the split's days only (validation: no test days)
    ingest(settings, ws, feature_store.read_spec(settings, ws), events=root / "events.csv", items=movies)
    timings = {}
    started = time.perf_counter()
    backfill(settings, ws, sp.history[0], sp.history[-1])
    timings["backfill_s"] = round(time.perf_counter() - started, 1)
    paths: dict[str, int] = {}
    scored = []
    for day in sp.test:
        retriever = Retriever.open(settings, ws)

        def answer(users, seen_counts):
            out = {}
            for at in range(0, len(users), settings.serving.max_batch):
                batch = users[at : at + settings.serving.max_batch]
                want = min(settings.serving.max_k, TOP + max(seen_counts[u] for u in batch))
                for user, rec in zip(batch, retriever.recall_batch(batch, k=want).recalls):
                    out[user] = list(rec.item_ids)
                    paths[rec.path] = paths.get(rec.path, 0) + 1
            return out

        scored.append(score_day(answer, sp, day))
        if day != sp.test[-1]:
            started = time.perf_counter()
            run(settings, ws, day)
            timings.setdefault("full_update_s", []).append(round(time.perf_counter() - started, 1))
    return pd.concat(scored, ignore_index=True), {"paths_per_user_day": paths, **timings}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES),
                        help="settings the tuned run chooses from on the validation split (default: all)")
    parser.add_argument("--snapshot", choices=sorted(SNAPSHOTS), default="100K",
                        help="the vendored MovieTweetings snapshot (default 100K; 10K is the tests' sample)")
    args = parser.parse_args()
    data = SNAPSHOTS[args.snapshot]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = (tmp / "movies.csv", tmp / "events.csv")
        movies_csv(files[0], data)
        events = events_csv(files[1], data)
        test, validation = split(events), split(events, validation=True)

        tuning = {}
        for name in args.candidates if len(args.candidates) > 1 else []:
            scored, _ = project(validation, CANDIDATES[name], tmp / f"validation-{name}", files, args.snapshot)
            tuning[name] = summarise(scored)["all"]
        best = max(tuning, key=lambda n: (tuning[n]["recall@100"], n == "default")) if tuning else "default"
        decay = {d: summarise(popularity(validation, d))["all"]["recall@100"] for d in DECAY_DAYS}
        chosen_decay = max(decay, key=decay.get)

        results, notes = {}, {}
        results["popularity"] = summarise(popularity(test))
        results["popularity_recent"] = summarise(popularity(test, chosen_decay))
        results["tfrs_id_only"] = summarise(tfrs_id_only(test))
        scored, notes["project_default"] = project(test, {}, tmp / "test-default", files, args.snapshot)
        results["project_default"] = summarise(scored)
        if best == "default":
            results["project_tuned"], notes["project_tuned"] = results["project_default"], notes["project_default"]
        else:
            scored, notes["project_tuned"] = project(test, CANDIDATES[best], tmp / "test-tuned", files, args.snapshot)
            results["project_tuned"] = summarise(scored)

    table = markdown(results)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "real_data.md").write_text(table + "\n")
    pop, ours = results["popularity"]["all"]["recall@100"], results["project_default"]["all"]["recall@100"]
    write_result("real_data", {
        "data": f"MovieTweetings snapshot {args.snapshot} ({data.relative_to(Path(__file__).resolve().parents[1])}, {len(events):,} ratings)",
        "protocol": __doc__.split("Protocol", 1)[1].split("``python -m")[0].strip(),
        "history_days": [str(d) for d in test.history], "test_days": [str(d) for d in test.test],
        "popularity_recent_decay_days": {"validation_recall@100": decay, "chosen": chosen_decay},
        "tuning_on_validation": {"candidates": {n: CANDIDATES[n] for n in args.candidates},
                                 "recall@100": {n: t["recall@100"] for n, t in tuning.items()},
                                 "chosen": best},
        "results": results, "runs": notes,
        "target": "project_default recall@100 >= 1.15 x popularity over all test clicks, and >= popularity on cold users",
        "project_default_over_popularity_recall@100": round(ours / pop, 3) if pop else None,
    })  # fmt: skip


def markdown(results: dict) -> str:
    head = "| strategy | all R@10 | R@50 | R@100 | NDCG@100 | warm R@100 | cold R@100 | new items R@100 | all R@100, seen excluded |"
    rows = [head, "|" + "---|" * 9]
    for name, r in results.items():
        a = r["all"]
        rows.append(
            f"| {name} | {a['recall@10']:.4f} | {a['recall@50']:.4f} | {a['recall@100']:.4f} | {a['ndcg@100']:.4f} | "
            f"{r['warm_users'].get('recall@100', 0):.4f} | {r['cold_users'].get('recall@100', 0):.4f} | "
            f"{r['new_items'].get('recall@100', 0):.4f} | {r['seen_excluded']['all']['recall@100']:.4f} |"
        )
    clicks = results["popularity"]
    rows.append("")
    rows.append(f"{clicks['all']['clicks']:,} test clicks: {clicks['warm_users']['clicks']:,} of warm users, "
                f"{clicks['cold_users']['clicks']:,} of cold users, {clicks['new_items']['clicks']:,} on new items.")  # fmt: skip
    return "\n".join(rows)


if __name__ == "__main__":
    main()
