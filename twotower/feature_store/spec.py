"""The feature spec read from a Feast feature repo: services -> projections -> fields -> inputs.

``derive`` works on anything that answers Feast's three lookups (``get_feature_service``,
``get_feature_view``, ``get_entity``): a ``FeatureStore`` on an applied registry, or the
objects of a repo parsed by ``feast.repo_operations.parse_repo`` (``feature_store.repo`` does
that in a fresh interpreter, and applies it).

Each mistake is a ``UserError`` naming the setting, service, view, field and value.
"""

from __future__ import annotations

import re

from dataclasses import replace

from twotower.core.errors import UserError
from twotower.core.features import CONTEXT, KINDS, Feature, FeatureSpec, Source, Tower
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
_TAGS = ("kind", "buckets", "max_len", "dim", "min", "max", "decay_days")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
        if side == "user" and view.name in (fs.embedding_view, fs.history_view):
            continue  # the platform's own views: not profile features
        popularity = side == "item" and view.name == fs.popularity_view
        where = f"feature service {name!r}, view {view.name!r}"
        entities = list(view.entities)
        if len(entities) != 1:
            raise UserError(f"{where}: a tower's view must have exactly one entity, it has {entities or 'none'}")
        entity_names.update(entities)
        for field in projection.features:
            if any(f.name == field.name for f in features):
                raise UserError(f"{where}, field {field.name!r}: another view of the service has a field of that name")
            feature = _feature(field, view.name, name, fs)
            if not popularity and "decay_days" in (field.tags or {}):
                raise UserError(f"{where}, field {field.name!r}: tag decay_days is for the fields of "
                                f"{fs.popularity_view!r} (features.popularity_view), the clicks the platform counts")
            features.append(_popularity_field(feature, field, view.name) if popularity else feature)
        source = _source(view)
        if source is None:
            raise UserError(f"{where}: the towers read a view's history from a FileSource (parquet); this one has "
                            f"{type(getattr(view, 'batch_source', None)).__name__}")  # fmt: skip
        if popularity and source.path.endswith(".parquet"):
            raise UserError(f"{where} (features.popularity_view): its FileSource path {source.path!r} must be a "
                            f"directory: the platform writes one parquet file per day into it")  # fmt: skip
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
    owned = (fs.popularity_view,) if side == "item" and any(f.view == fs.popularity_view for f in features) else ()
    return Tower(side=side, service=name, entity=entity.name, join_key=join_keys[0],
                 id_type="string" if value_type == "STRING" else "int",
                 features=tuple(features), sources=tuple(sources), platform_views=owned)  # fmt: skip


def _popularity_field(feature: Feature, field, view: str) -> Feature:
    """A field of ``features.popularity_view``: numeric, with the time constant of its decay."""
    where = f"view {view!r} (features.popularity_view), field {field.name!r}"
    if feature.kind != "numeric" or feature.value != "float":
        raise UserError(f"{where}: the platform writes decayed click counts, so the field must be Float32 or "
                        f"Float64 (is {feature.dtype}, {feature.kind})")  # fmt: skip
    raw = (field.tags or {}).get("decay_days")
    try:
        decay = float(str(raw))
    except ValueError:
        decay = 0.0
    if raw is None or not decay > 0:
        raise UserError(f"{where}: needs tag decay_days, a positive number of days (got {raw!r}), e.g. "
                        f"tags={{'decay_days': '7'}}")  # fmt: skip
    return replace(feature, decay_days=decay)


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


def _history_view(lookups, fs: FeatureSettings, user: Tower, item: Tower) -> str:
    """``features.history_view`` if the user service includes it (checked), else ""."""
    service = _service(lookups, fs.user_service, "user_service")
    if fs.history_view not in [p.name for p in service.feature_view_projections]:
        return ""
    view = lookups.get_feature_view(fs.history_view)
    fields = {f.name: str(f.dtype) for f in view.schema}
    want = "Array(String)" if item.id_type == "string" else "Array(Int64)"
    if fields.get("items") != want:
        raise UserError(f"view {fs.history_view!r} (features.history_view): needs field 'items' of type {want}, the "
                        f"item IDs (has {fields.get('items', 'none')})")  # fmt: skip
    if list(view.entities) != [user.entity]:
        raise UserError(f"view {fs.history_view!r} must be keyed by the user entity {user.entity!r} alone "
                        f"(it is keyed by {list(view.entities)})")  # fmt: skip
    clash = [f.ref for f in user.features if f.name == "items"]
    if clash:
        raise UserError(f"feature service {fs.user_service!r}, field {clash[0]!r}: clashes with the field 'items' of "
                        f"{fs.history_view!r} (features.history_view); rename one")  # fmt: skip
    return fs.history_view


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
    return FeatureSpec(user=user, item=item, context=tuple(fs.context), embedding_view=fs.embedding_view,
                       history_view=_history_view(lookups, fs, user, item),
                       popularity_view=fs.popularity_view if item.platform_views else "")  # fmt: skip
