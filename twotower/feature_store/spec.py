"""The feature spec read from a Feast feature repo: services -> projections -> fields -> inputs.

``derive`` works on anything that answers Feast's three lookups (``get_feature_service``,
``get_feature_view``, ``get_entity``): a ``FeatureStore`` on an applied registry, or the
objects of a repo parsed by ``feast.repo_operations.parse_repo``. ``of_repo`` parses a repo in
a fresh interpreter (Feast imports each repo file as a top-level module, so two repos with a
``feature_views.py`` cannot be parsed in one process). ``apply_repo`` derives, checks (against a
served model's spec too, when given) and applies in one such process, so a repo the towers
cannot use is refused before Feast writes anything; the spec of the last apply is
``<workspace>/feast/spec.json``.

Each mistake is a ``UserError`` naming the setting, service, view, field and value.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from twotower.core.imports import FEAST_TYPECHECKS
from twotower.core.errors import FeatureSetChanged, UserError
from twotower.core.features import CONTEXT, KINDS, Feature, FeatureSpec, Source, Tower, check_spec
from twotower.core.sections import FeatureSettings

_INTS, _FLOATS = ("Int32", "Int64"), ("Float32", "Float64")
_SCALAR_KIND = {"Int32": "categorical", "Int64": "categorical", "String": "categorical", "Bool": "categorical",
                "Float32": "numeric", "Float64": "numeric"}  # fmt: skip
_VALUE = {"Int32": "int", "Int64": "int", "String": "string", "Bool": "bool", "Float32": "float", "Float64": "float"}
# What each kind accepts: (scalar dtypes, array element dtypes)
_ACCEPTS = {
    "categorical": ((*_INTS, "String", "Bool"), ()),
    "multi": ((), (*_INTS, "String", "Bool")),
    "numeric": ((*_INTS, *_FLOATS, "Bool"), ()),
    "vector": ((), _FLOATS),
}
_TAGS = ("kind", "buckets", "max_len", "dim", "min", "max")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Lookups:
    """Feast's lookups over a parsed repo's objects (a ``FeatureStore`` has the same three)."""

    def __init__(self, contents) -> None:
        self.services = {s.name: s for s in contents.feature_services}
        self.views = {v.name: v for v in contents.feature_views}
        self.entities = {e.name: e for e in contents.entities}

    def get_feature_service(self, name):
        if name not in self.services:
            raise KeyError(name)
        return self.services[name]

    def get_feature_view(self, name):
        return self.views[name]

    def get_entity(self, name):
        return self.entities[name]

    def list_feature_services(self):
        return list(self.services.values())


def _dtype(field) -> tuple[str | None, str]:
    """``(array element type or None, scalar type)`` of a Field, as Feast spells them."""
    name = str(field.dtype)
    if name.startswith("Array(") and name.endswith(")"):
        return name[6:-1], name
    return None, name


def _int_tag(tags: dict, key: str, where: str) -> int | None:
    if key not in tags:
        return None
    try:
        value = int(str(tags[key]))
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{where}: tag {key}={tags[key]!r} must be a positive integer")
    return value


def _feature(field, view: str, service: str, fs: FeatureSettings) -> Feature:
    where = f"feature service {service!r}, view {view!r}, field {field.name!r}"
    if not _NAME.fullmatch(field.name):
        raise UserError(f"{where}: a tower input's name must be a Python identifier (it names a TFRecord "
                        f"feature and a SavedModel input)")  # fmt: skip
    element, dtype = _dtype(field)
    tags = dict(field.tags or {})  # other tags than _TAGS are the user's own (owner, pii, ...)
    kind = tags.get("kind")
    if kind is None:
        if element is None:
            kind = _SCALAR_KIND.get(dtype)
        else:
            kind = "vector" if element in _FLOATS else "multi" if element in _VALUE else None
        if kind is None:
            raise UserError(f"{where}: the towers cannot use dtype {dtype} (use Int32/Int64/String/Bool, "
                            f"Float32/Float64, or an Array of them)")  # fmt: skip
    elif kind not in KINDS:
        raise UserError(f"{where}: tag kind={kind!r} is not one of {', '.join(KINDS)}")
    scalars, elements = _ACCEPTS[kind]
    if (element is None and dtype not in scalars) or (element is not None and element not in elements):
        raise UserError(f"{where}: dtype {dtype} cannot be a {kind} input")
    value = _VALUE[element or dtype]
    buckets = _int_tag(tags, "buckets", where)
    max_len = _int_tag(tags, "max_len", where)
    dim = _int_tag(tags, "dim", where)
    if kind in ("categorical", "multi"):
        if value == "bool":
            buckets = buckets or 2
        if buckets is not None and buckets < 2:
            raise UserError(f"{where}: tag buckets={tags['buckets']!r} must be at least 2")
        buckets = buckets or fs.default_buckets
    elif buckets is not None:
        raise UserError(f"{where}: tag buckets is for categorical and list fields, not a {kind} one")
    if kind == "multi":
        max_len = max_len or fs.default_max_len
    elif max_len is not None:
        raise UserError(f"{where}: tag max_len is for list fields, not a {kind} one")
    if kind == "vector":
        if dim is None:
            raise UserError(f"{where}: a vector field needs its length as a tag, e.g. tags={{'dim': '8'}}")
    elif dim is not None:
        raise UserError(f"{where}: tag dim is for vector fields, not a {kind} one")
    bounds = {}
    for key in ("min", "max"):
        if key in tags:
            if element is not None or value not in ("int", "float"):
                raise UserError(f"{where}: tag {key} is for Int/Float fields, not {dtype}")
            try:
                bounds[key] = float(str(tags[key]))
            except ValueError:
                raise UserError(f"{where}: tag {key}={tags[key]!r} is not a number") from None
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        raise UserError(f"{where}: tag min={tags['min']!r} exceeds max={tags['max']!r}")
    return Feature(name=field.name, view=view, kind=kind, dtype=dtype, value=value,
                   buckets=buckets or 0, max_len=max_len or 0, dim=dim or 0, **bounds)  # fmt: skip


def _source(view) -> Source | None:
    batch = getattr(view, "batch_source", None)
    path = getattr(batch, "path", None)
    if batch is None or not path:
        return None
    return Source(view=view.name, path=str(path), timestamp_field=batch.timestamp_field,
                  created_timestamp_column=batch.created_timestamp_column or None)  # fmt: skip


def _service(lookups, name: str, setting: str):
    try:
        return lookups.get_feature_service(name)
    except Exception:  # Feast raises its own FeatureServiceNotFoundException; _Lookups a KeyError
        try:
            known = sorted(s.name for s in lookups.list_feature_services())
        except Exception:
            known = []
        raise UserError(f"features.{setting}: the feature repo declares no feature service {name!r} "
                        f"(it declares: {', '.join(known) or 'none'})") from None  # fmt: skip


def _tower(lookups, side: str, fs: FeatureSettings) -> Tower:
    name = getattr(fs, f"{side}_service")
    service = _service(lookups, name, f"{side}_service")
    features: list[Feature] = []
    sources: list[Source] = []
    entity_names: set[str] = set()
    for projection in service.feature_view_projections:
        view = lookups.get_feature_view(projection.name)
        if side == "user" and view.name == fs.embedding_view:
            continue
        where = f"feature service {name!r}, view {view.name!r}"
        entities = list(view.entities)
        if len(entities) != 1:
            raise UserError(f"{where}: a tower's view must have exactly one entity, it has {entities or 'none'}")
        entity_names.update(entities)
        for field in projection.features:
            if any(f.name == field.name for f in features):
                raise UserError(f"{where}, field {field.name!r}: another view of the service has a field of that name")
            features.append(_feature(field, view.name, name, fs))
        source = _source(view)
        if source is None:
            raise UserError(f"{where}: the towers read a view's history from a FileSource (parquet); this one has "
                            f"{type(getattr(view, 'batch_source', None)).__name__}")  # fmt: skip
        sources.append(source)
    if len(entity_names) > 1:
        raise UserError(f"feature service {name!r}: its views are keyed by different entities {sorted(entity_names)}")
    if not entity_names and side == "item":
        raise UserError(f"feature service {name!r} has no feature view: the item tower needs the items' rows")
    if not entity_names:  # an ID-only user tower: the user entity is the embedding view's
        names = [p.name for p in service.feature_view_projections]
        if fs.embedding_view not in names:
            raise UserError(f"feature service {name!r} has neither a profile view nor {fs.embedding_view!r}")
        keyed = [e for e in lookups.get_feature_view(fs.embedding_view).entities
                 if lookups.get_entity(e).join_key != "embedding_slot"]  # fmt: skip
        if len(keyed) != 1:
            raise UserError(f"view {fs.embedding_view!r}: needs the user entity and embedding_slot, has {keyed}")
        entity_names = set(keyed)
    entity = lookups.get_entity(entity_names.pop())
    join_keys = [entity.join_key]
    value_type = entity.value_type.name
    if value_type not in ("INT64", "INT32", "STRING"):
        raise UserError(f"entity {entity.name!r}: join key type {value_type} is not supported (String or Int64)")
    reserved = {join_keys[0], "event_timestamp"}
    for f in features:
        if f.name in reserved:
            raise UserError(f"feature service {name!r}, view {f.view!r}, field {f.name!r}: that name is reserved")
    return Tower(side=side, service=name, entity=entity.name, join_key=join_keys[0],
                 id_type="string" if value_type == "STRING" else "int",
                 features=tuple(features), sources=tuple(sources))  # fmt: skip


def _embedding_view(lookups, fs: FeatureSettings, user: Tower) -> None:
    service = _service(lookups, fs.user_service, "user_service")
    names = [p.name for p in service.feature_view_projections]
    if fs.embedding_view not in names:
        raise UserError(f"feature service {fs.user_service!r} must include the view {fs.embedding_view!r} "
                        f"(features.embedding_view): the user ID embeddings the tower reads online")  # fmt: skip
    view = lookups.get_feature_view(fs.embedding_view)
    fields = {f.name: str(f.dtype) for f in view.schema}
    want = {"embedding": "Array(Float32)", "generation": "String"}
    for field_name, dtype in want.items():
        if fields.get(field_name) != dtype:
            raise UserError(f"view {fs.embedding_view!r}: needs field {field_name!r} of type {dtype} "
                            f"(has {fields.get(field_name, 'none')})")  # fmt: skip
    if user.entity not in view.entities:
        raise UserError(f"view {fs.embedding_view!r} must be keyed by the user entity {user.entity!r} "
                        f"(it is keyed by {list(view.entities)})")  # fmt: skip


def derive(lookups, fs: FeatureSettings) -> FeatureSpec:
    """The spec of the services named in ``fs`` (see the module docstring)."""
    unknown = [c for c in fs.context if c not in CONTEXT]
    if unknown:
        raise UserError(f"features.context: unknown {unknown} (known: {', '.join(CONTEXT)})")
    user = _tower(lookups, "user", fs)
    item = _tower(lookups, "item", fs)
    _embedding_view(lookups, fs, user)
    for f in user.features:
        if f.name in fs.context:
            raise UserError(f"feature service {user.service!r}, field {f.name!r}: clashes with features.context")
    return FeatureSpec(user=user, item=item, context=tuple(fs.context), embedding_view=fs.embedding_view)


def _child(repo: Path, fs: FeatureSettings, workspace: Path | None, extra: list[str], env: dict | None = None):
    """Run ``_main`` in a fresh interpreter (see the module docstring); raise its UserError."""
    repo = Path(repo).resolve()
    if not repo.is_dir():
        raise UserError(f"feature repo {repo}: no such directory")
    with tempfile.TemporaryDirectory(prefix="twotower-spec-") as scratch:
        env = dict(env or os.environ, TWOTOWER_WORKSPACE=str(workspace or scratch), **{FEAST_TYPECHECKS: "1"})
        proc = subprocess.run(
            [sys.executable, "-m", "twotower.feature_store.spec", str(repo), fs.model_dump_json(), *extra],
            env=env, capture_output=True, text=True, cwd=str(repo),
        )  # fmt: skip
    if proc.returncode == 2:
        message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        kind, _, text = message.partition(": ")
        if kind == "FeatureSetChanged":
            raise FeatureSetChanged(text)
        raise UserError(f"feature repo {repo}: {text if kind == 'UserError' else message}")
    return proc


def of_repo(repo: Path, fs: FeatureSettings, workspace: Path | None = None) -> FeatureSpec:
    """Parse ``repo`` (in a fresh interpreter, see the module docstring) and derive its spec."""
    proc = _child(repo, fs, workspace, [])
    if proc.returncode != 0:
        raise UserError(f"feature repo {repo}: cannot be read ({proc.stderr.strip()[-2000:]})")
    spec = FeatureSpec.from_dict(json.loads(proc.stdout))
    return spec.bind(Path(workspace).resolve()) if workspace is not None else spec


def apply_repo(repo: Path, fs: FeatureSettings, workspace: Path, yaml_path: Path, spec_out: Path, env: dict,
               keep: tuple[FeatureSpec, str] | None = None) -> str:  # fmt: skip
    """Derive the repo's spec and, only if the towers can use it, ``feast apply`` it - one fresh
    interpreter for both (the real Feast CLI command, called in that process); the spec is
    written to ``spec_out`` after Feast succeeded. ``keep`` = (a served model's spec, what to
    call it): refused with ``FeatureSetChanged`` unless the repo declares the same tower inputs.
    Returns Feast's output."""
    extra = ["--apply", str(yaml_path), str(spec_out)]
    if keep is not None:
        extra += ["--keep", json.dumps(keep[0].to_dict()), keep[1]]
    proc = _child(repo, fs, workspace, extra, env)
    if proc.returncode != 0:
        raise UserError(f"feast apply failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _check_sources(spec: FeatureSpec) -> None:
    for tower in (spec.user, spec.item):
        for source in tower.sources:
            if "://" not in source.path and not Path(source.path).exists():
                raise UserError(f"feature view {source.view!r} reads {source.path}, which does not exist: "
                                f"run `twotower simulate` or `twotower ingest` first, or point its source at your data")  # fmt: skip


def _apply(spec: FeatureSpec, workspace: Path, yaml_path: str, spec_out: str) -> int:
    """In the child: check the sources, make the embedding source valid, run Feast's apply."""
    import pyarrow.parquet as pq

    from feast.cli.cli import cli

    from twotower.core import schema
    from twotower.core.files import atomic_path, atomic_write_bytes
    from twotower.core.workspace import Workspace

    _check_sources(spec)
    embeddings = Workspace(workspace).user_embeddings_dir
    if not any(embeddings.glob("*.parquet")):  # an empty, typed file: valid before the first generation
        embeddings.mkdir(parents=True, exist_ok=True)
        with atomic_path(embeddings / "empty.parquet") as tmp:
            pq.write_table(schema.user_id_embedding(spec.user.join_key, spec.user.id_type).empty_table(), tmp)
    try:
        cli.main(["-f", yaml_path, "apply"], prog_name="feast", standalone_mode=False)
    except SystemExit as exc:  # click exits on its own errors
        if exc.code:
            return 1
    except Exception as exc:  # noqa: BLE001 - Feast's own error, reported by the parent
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    atomic_write_bytes(Path(spec_out), json.dumps(spec.to_dict(), indent=2).encode())
    return 0


def _main(argv: list[str]) -> int:
    import argparse

    from feast.repo_operations import parse_repo

    parser = argparse.ArgumentParser(prog="python -m twotower.feature_store.spec")
    parser.add_argument("repo", type=Path)
    parser.add_argument("settings", type=FeatureSettings.model_validate_json)
    parser.add_argument("--apply", nargs=2, metavar=("YAML", "SPEC_OUT"))
    parser.add_argument("--keep", nargs=2, metavar=("SPEC_JSON", "WHERE"))
    args = parser.parse_args(argv)
    repo, settings = args.repo, args.settings
    sys.path.insert(0, str(repo))
    try:
        contents = parse_repo(repo)
    except Exception as exc:  # the user's own Python failed to import
        print(f"UserError: cannot import its declarations: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        spec = derive(_Lookups(contents), settings)
    except UserError as exc:
        print(f"UserError: {exc}", file=sys.stderr)
        return 2
    workspace = os.environ.get("TWOTOWER_WORKSPACE", "")
    data = spec.to_dict()
    for side in ("user", "item"):  # a relative FileSource path is relative to the repo (as in Feast)
        for source in data[side]["sources"]:
            if "://" not in source["path"]:
                source["path"] = str((repo / source["path"]).resolve())
    # paths under the workspace are stored relative to it (FeatureSpec.bind)
    spec = FeatureSpec.from_dict(data).bind(Path(workspace).resolve()) if workspace else FeatureSpec.from_dict(data)
    if args.apply:
        try:
            if args.keep:
                check_spec(FeatureSpec.from_dict(json.loads(args.keep[0])), spec, args.keep[1])
            return _apply(spec, Path(workspace).resolve(), *args.apply)
        except FeatureSetChanged as exc:
            print(f"FeatureSetChanged: {exc}", file=sys.stderr)
            return 2
        except UserError as exc:
            print(f"UserError: {exc}", file=sys.stderr)
            return 2
    print(json.dumps(spec.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
