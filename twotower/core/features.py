"""The feature spec: what each tower takes, derived from the user's Feast feature services.

Pure data, no Feast: ``twotower.feature_store.spec`` reads a feature
repo's services into a ``FeatureSpec``; every other layer (examples, TFRecords, towers, numpy
tower, online reader, report) takes the spec as an argument and never names a feature. The
spec is saved with every checkpoint and generation (``to_dict``), so serving and a warm start
read the spec the model was built with.

Kinds (from the Feast dtype, overridable by ``Field.tags["kind"]``):

* ``categorical`` - Int32/Int64/String/Bool: one value -> a row of a table of ``buckets`` rows
  (``key mod buckets``; strings are hashed to a key first).
* ``multi`` - Array(Int*/String): up to ``max_len`` values, mean-pooled over the present ones.
* ``numeric`` - Float32/Float64 (or an int tagged ``numeric``): standardised with statistics of
  the first full update (kept by warm starts), plus a "missing" indicator.
* ``vector`` - Array(Float32/Float64) of a fixed ``dim``: projected by a dense layer, plus a
  "missing" indicator.

The optional ``popularity_view`` of the item service is the platform's own, like the user ID
embeddings: its numeric fields are each item's recent clicks, decayed over the field's
``decay_days`` (``materialize.popularity`` writes them), not ingested.

How raw values become the towers' inputs: ``twotower.core.encode``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any, Literal

from twotower.core.errors import FeatureSetChanged, UserError

Kind = Literal["categorical", "multi", "numeric", "vector"]
KINDS: tuple[str, ...] = ("categorical", "multi", "numeric", "vector")
IdType = Literal["int", "string"]
CONTEXT = {"hour": 24, "weekday": 7}  # request context features -> their number of values
FORMAT = "twotower-feature-spec/1"


@dataclass(frozen=True)
class Feature:
    name: str
    view: str
    kind: str  # one of KINDS
    dtype: str  # the Feast dtype as declared, e.g. "Array(String)"
    value: str  # element type: "int" | "string" | "bool" | "float"
    buckets: int = 0  # categorical / multi
    max_len: int = 0  # multi
    dim: int = 0  # vector
    min: float | None = None  # declared domain (tags min / max): the daily gate checks it
    max: float | None = None
    decay_days: float = 0.0  # a field of the popularity view: the time constant of its decayed clicks

    @property
    def width(self) -> int:
        """Values per row once encoded: 1, ``max_len`` or ``dim``."""
        return {"multi": self.max_len, "vector": self.dim}.get(self.kind, 1)

    @property
    def shape(self) -> tuple[int, ...]:
        """One row's encoded shape: ``()`` for a single value, ``(width,)`` for a list or vector."""
        return (self.width,) if self.kind in ("multi", "vector") else ()

    @property
    def is_int(self) -> bool:
        """Encoded as int64 keys (categorical / multi) rather than float32."""
        return self.kind in ("categorical", "multi")

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.name}"


@dataclass(frozen=True)
class Source:
    """A feature view's offline source (a Feast FileSource)."""

    view: str
    path: str
    timestamp_field: str
    created_timestamp_column: str | None = None


@dataclass(frozen=True)
class Tower:
    side: str  # "user" | "item": the prefix of its example columns
    service: str
    entity: str
    join_key: str
    id_type: str  # IdType
    features: tuple[Feature, ...]
    sources: tuple[Source, ...] = ()
    platform_views: tuple[str, ...] = ()  # views the platform writes (not ingested, not gated)

    def column(self, feature: Feature | str) -> str:
        """The feature's column in the training examples (``user__age``, ``item__genres``)."""
        return f"{self.side}__{feature if isinstance(feature, str) else feature.name}"

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def views(self) -> list[str]:
        return list(dict.fromkeys(f.view for f in self.features))

    def data_views(self) -> list[str]:
        """The views of the user's own data: what ingest writes and the daily gate checks."""
        return [v for v in self.views() if v not in self.platform_views]

    def data_tower(self) -> "Tower":
        """This tower with only the views of the user's own data (``data_views``)."""
        if not self.platform_views:
            return self
        return replace(self, features=tuple(f for f in self.features if f.view not in self.platform_views),
                       sources=tuple(s for s in self.sources if s.view not in self.platform_views), platform_views=())  # fmt: skip

    def source(self, view: str) -> Source:
        for s in self.sources:
            if s.view == view:
                return s
        raise UserError(f"feature view {view!r} of service {self.service!r} has no file source")


WORKSPACE = "{workspace}"  # a source path under the workspace, as the spec stores it


@dataclass(frozen=True)
class FeatureSpec:
    user: Tower
    item: Tower
    context: tuple[str, ...] = ("hour",)
    embedding_view: str = "user_id_embedding"
    history_view: str = ""  # the user service's view of recently clicked items ("" = none declared)
    popularity_view: str = ""  # the item service's view of decayed click counts ("" = none declared)
    workspace: str = ""  # the workspace its "{workspace}/..." source paths are in ("" = unbound)

    def data_spec(self) -> "FeatureSpec":
        """The towers over the user's own data only (what ``twotower ingest`` reads and writes)."""
        return replace(self, user=self.user.data_tower(), item=self.item.data_tower(), popularity_view="")

    def bind(self, root) -> "FeatureSpec":
        """This spec with its workspace-relative source paths under workspace ``root``.

        Paths under the workspace are stored relative to it (``to_dict``), so a copied or moved
        workspace, or a checkpoint read in another one, reads its own offline store."""
        root = str(root)

        def tower(t: Tower) -> Tower:
            return replace(t, sources=tuple(replace(s, path=s.path.replace(WORKSPACE, root, 1)) for s in t.sources))

        return replace(self, user=tower(self.user), item=tower(self.item), workspace=root)

    def architecture(self) -> dict[str, Any]:
        """What the model's shapes depend on (compared at warm start; sources may move)."""
        def tower(t: Tower) -> dict:
            return {"id_type": t.id_type, "features": [
                {k: v for k, v in asdict(f).items() if k not in ("view", "dtype", "min", "max")
                 and not (k == "decay_days" and not v)} for f in t.features
            ]}  # fmt: skip

        return {"user": tower(self.user), "item": tower(self.item), "context": list(self.context)}

    def to_dict(self) -> dict[str, Any]:
        data = {"format": FORMAT, **asdict(self)}
        data.pop("workspace")
        if self.workspace:
            for side in ("user", "item"):
                for source in data[side]["sources"]:
                    if source["path"] == self.workspace or source["path"].startswith(self.workspace + "/"):
                        source["path"] = WORKSPACE + source["path"][len(self.workspace):]
        return data

    @classmethod
    def load(cls, path) -> "FeatureSpec":
        from pathlib import Path

        path = Path(path)  # <workspace>/feast/spec.json
        try:
            return cls.from_dict(json.loads(path.read_text())).bind(path.resolve().parent.parent)
        except FileNotFoundError:
            raise UserError(f"no feature spec at {path}: run `twotower feast apply` first") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSpec":
        if data.get("format") != FORMAT:
            raise UserError(f"unknown feature spec format {data.get('format')!r}, expected {FORMAT!r}")

        def tower(d: dict) -> Tower:
            return Tower(
                **{**d, "features": tuple(Feature(**f) for f in d["features"]),
                   "sources": tuple(Source(**s) for s in d.get("sources", ())),
                   "platform_views": tuple(d.get("platform_views", ()))}
            )  # fmt: skip

        return cls(tower(data["user"]), tower(data["item"]), tuple(data["context"]), data["embedding_view"],
                   data.get("history_view", ""), data.get("popularity_view", ""))  # fmt: skip

    @cached_property
    def _identity(self) -> str:
        """``to_dict`` as canonical JSON, computed once (the request path hashes specs)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def __eq__(self, other) -> bool:  # the same inputs and sources, wherever the workspace is
        return self is other or (isinstance(other, FeatureSpec) and self._identity == other._identity)

    def __hash__(self) -> int:
        return hash(self._identity)


def architecture_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Readable differences between two ``FeatureSpec.architecture()`` (empty: compatible)."""
    changes = []
    for side in ("user", "item"):
        a, b = old.get(side, {}), new.get(side, {})
        if a.get("id_type") != b.get("id_type"):
            changes.append(f"{side} IDs: {a.get('id_type')} -> {b.get('id_type')}")
        fa = {f["name"]: f for f in a.get("features", [])}
        fb = {f["name"]: f for f in b.get("features", [])}
        changes += [f"{side} feature {n!r} removed" for n in fa if n not in fb]
        changes += [f"{side} feature {n!r} added" for n in fb if n not in fa]
        for n in fa.keys() & fb.keys():
            diff = {k: (fa[n].get(k), fb[n].get(k)) for k in fa[n].keys() | fb[n].keys() if fa[n].get(k) != fb[n].get(k)}
            changes += [f"{side} feature {n!r}: {k} {x!r} -> {y!r}" for k, (x, y) in sorted(diff.items())]
        if [f["name"] for f in a.get("features", [])] != [f["name"] for f in b.get("features", [])] and fa.keys() == fb.keys():
            changes.append(f"{side} features reordered")
    if old.get("context") != new.get("context"):
        changes.append(f"context: {old.get('context')} -> {new.get('context')}")
    return changes


def check_spec(saved: FeatureSpec, spec: FeatureSpec, where: str) -> None:
    """Refuse (``FeatureSetChanged``) a spec whose tower inputs differ from the ``saved`` one's."""
    changes = architecture_changes(saved.architecture(), spec.architecture())
    if changes:
        raise FeatureSetChanged(
            f"{where} was built with other tower inputs than the feature repo declares now: {'; '.join(changes)}. "
            f"Declare them back, or start a fresh model (full-update --fresh)"
        )
