"""Running Feast against a workspace: the effective ``feature_store.yaml``, apply, the SDK handle.

The declarations live in ``feature_repo/`` (the truth); which online store they go to comes from
the typed settings, rendered into ``<workspace>/feast/feature_store.yaml``. ``feast apply`` runs
as the real Feast CLI in a subprocess (exactly what a user types by hand, and Feast's apply
changes the process's working directory); reads use the SDK in-process (``store``), and
``materialize.online`` materializes with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig

from pathlib import Path

import yaml

from twotower.core.config import Settings
from twotower.core.errors import UserError
from twotower.core.features import FeatureSpec, check_spec
from twotower.feature_store.repo import apply_repo, of_repo as spec_of_repo
from twotower.core.files import atomic_write_bytes
from twotower.core.workspace import Workspace

# Where the package's own feature repo is: beside the package in a source checkout, under the
# environment's data directory in an installed wheel (setup.cfg's data_files).
_CHECKOUT_REPO = Path(__file__).resolve().parents[2] / "feature_repo"
INSTALLED_REPO = Path(sysconfig.get_path("data")) / "share" / "twotower" / "feature_repo"
FEATURE_REPO = _CHECKOUT_REPO if _CHECKOUT_REPO.is_dir() else INSTALLED_REPO
REDIS_PASSWORD_ENV = "TWOTOWER_ONLINE_STORE__REDIS_PASSWORD"
APPLIED = "applied.json"  # what the last apply saw (``apply`` skips an unchanged one)


def feature_repo(settings: Settings) -> Path:
    """The Feast repo whose declarations are applied: ``feature_repo`` from the settings, else the
    package's own (the default world's declarations)."""
    repo = settings.feature_repo or FEATURE_REPO
    if not repo.is_dir() or not any(repo.glob("*.py")):
        where = "feature_repo (TWOTOWER_FEATURE_REPO)" if settings.feature_repo else "the package's feature repo"
        raise UserError(f"{where}: {repo} is not a Feast feature repo (no directory with .py declarations)")
    return repo


def render_yaml(settings: Settings, ws: Workspace) -> str:
    """The effective Feast config. Secrets stay as ``${VAR}`` (Feast expands them at load)."""
    if settings.online_store.type == "redis":
        o = settings.online_store
        # Bounded waits for every client of the store (redis-py waits forever by default).
        conn = f"{o.redis_host}:{o.redis_port},socket_connect_timeout={o.connect_timeout_s},socket_timeout={o.timeout_s}"
        if settings.online_store.redis_password is not None:
            conn += ",password=${%s}" % REDIS_PASSWORD_ENV
        # Newest-wins is decided by our push path (generation first, then event time) and
        # materialize writes a new generation into its own slot; Feast's timestamp-only dedup
        # would silently drop a newer generation's rows whose event time is older.
        online = {"type": "redis", "connection_string": conn, "skip_dedup": True}
    else:
        online = {"type": "sqlite", "path": str(ws.feast_dir / "online_store.db")}
    config = {
        "project": settings.feast_project,
        "provider": "local",
        # A file registry written by temp file + rename (Feast's own rewrites it in place).
        "registry": {"registry_type": "file", "path": str(ws.feast_dir / "registry.db"),
                     "registry_store_type": "twotower.adapters.feast_registry.AtomicFileRegistryStore",
                     # A materialize marks its view MATERIALIZING in the registry until it ends; a
                     # publish killed there would leave the SDK refusing the view. Our publish
                     # writes a new generation into the slot nobody serves, so serving on is right.
                     "serve_features_while_materializing": True},
        "online_store": online,
        "offline_store": {"type": "dask"},
        # Profiles and the platform's views are materialized in batches of this many rows (one
        # online_write_batch each) instead of one call holding every changed row.
        "materialization": {"online_write_batch_size": settings.online_store.write_batch_rows},
        "entity_key_serialization_version": 3,
    }
    return yaml.safe_dump(config, sort_keys=False)


def feast_env(settings: Settings, ws: Workspace) -> dict[str, str]:
    env = dict(os.environ, TWOTOWER_WORKSPACE=str(ws.root))
    if settings.online_store.redis_password is not None:
        env[REDIS_PASSWORD_ENV] = settings.online_store.redis_password.get_secret_value()
    return env


def prepare(settings: Settings, ws: Workspace) -> Path:
    """Write the effective yaml (apply also makes the embedding source valid: spec._apply),
    unless it already says that: opening the store to read (a server, a copy of a workspace
    being taken) writes nothing."""
    ws.ensure()
    rendered = render_yaml(settings, ws).encode()
    if not ws.feature_store_yaml.is_file() or ws.feature_store_yaml.read_bytes() != rendered:
        atomic_write_bytes(ws.feature_store_yaml, rendered)
    return ws.feature_store_yaml


def spec_path(ws: Workspace) -> Path:
    return ws.feature_spec_path


def applied_spec(ws: Workspace) -> FeatureSpec:
    """The feature spec of the workspace's last ``apply`` (what the towers are built from)."""
    return FeatureSpec.load(spec_path(ws))


def read_spec(settings: Settings, ws: Workspace) -> FeatureSpec:
    """The spec of the feature repo as it is now (parsed, checked; nothing written)."""
    return spec_of_repo(feature_repo(settings), settings.features, ws.root)


def is_applied(settings: Settings, ws: Workspace) -> bool:
    """Whether the workspace's registry and spec are those of the feature repo as it is now."""
    return _read_stamp(ws) == applied_state(settings, ws) and spec_path(ws).is_file()


def apply(settings: Settings, ws: Workspace, *, force: bool = False, keep: tuple[FeatureSpec, str] | None = None) -> str:
    """``feast apply`` of the feature repo against the workspace (idempotent). Returns Feast's output.

    Skipped (unless ``force``) when nothing it reads changed since the platform's last apply:
    the feature repo's files, the effective yaml and the registry itself (``applied_state``).
    The nightly publish thus pays for Feast's CLI only when the declarations moved; a registry
    anyone else wrote, a copied workspace or a new online store applies again. ``keep`` = (a
    served model's spec, its name): the repo must still declare its tower inputs
    (``FeatureSetChanged`` otherwise, before Feast writes anything, so serving goes on).
    """
    path = prepare(settings, ws)
    adopt_copied_registry(ws)
    if not force and is_applied(settings, ws):
        if keep is not None:
            check_spec(keep[0], applied_spec(ws), keep[1])
        return "feast apply: the feature repo, the yaml and the registry are unchanged since the last apply; skipped"
    # One fresh interpreter: the spec is derived (and checked against ``keep``) first, and a repo
    # the towers cannot use is refused before Feast writes anything; then the real `feast apply`.
    output = apply_repo(feature_repo(settings), settings.features, ws.root, path, spec_path(ws),
                        feast_env(settings, ws), keep)  # fmt: skip
    record_applied(settings, ws)
    return output


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + (p.read_bytes() if p.is_file() else b"<missing>") + b"\0")
    return h.hexdigest()


def applied_state(settings: Settings, ws: Workspace) -> dict:
    """What a ``feast apply`` depends on and changes, as digests."""
    repo = feature_repo(settings)
    state = {
        "feature_repo": _digest(sorted([*repo.glob("*.py"), repo / ".feastignore"])),
        "feature_store_yaml": _digest([ws.feature_store_yaml]),
        "registry": _digest([ws.feast_dir / "registry.db"]),
        "features": settings.features.model_dump(mode="json"),
    }
    if settings.online_store.type == "sqlite":
        state["online_store_db"] = (ws.feast_dir / "online_store.db").is_file()
    return state


def record_applied(settings: Settings, ws: Workspace) -> None:
    """Remember the registry as the platform left it (after an apply, or its own materialize)."""
    atomic_write_bytes(ws.feast_dir / APPLIED, json.dumps(applied_state(settings, ws), indent=2).encode())


def _read_stamp(ws: Workspace) -> dict | None:
    try:
        return json.loads((ws.feast_dir / APPLIED).read_text())
    except (OSError, ValueError):
        return None


def adopt_copied_registry(ws: Workspace) -> bool:
    """Point the registry's SQLite tables at this workspace's online store; True if it changed.

    Feast's registry records each SQLite table with the absolute path of its database. In a
    copied or moved workspace those paths still name the *original's* database, and the next
    ``feast apply`` tears down the tables it no longer declares there: it drops the original
    workspace's online tables (measured: a copy's full update emptied the source's store, and
    the copy's own materialize then failed with "no such table"). The database here is always
    ``<workspace>/feast/online_store.db`` (``render_yaml``), so any other path is a copy's.
    """
    from feast.protos.feast.core.Registry_pb2 import Registry

    path = ws.feast_dir / "registry.db"
    if not path.exists():
        return False
    proto = Registry()
    proto.ParseFromString(path.read_bytes())
    mine = str(ws.feast_dir / "online_store.db")
    moved = [o for o in proto.infra.infra_objects if o.HasField("sqlite_table") and o.sqlite_table.path != mine]
    for obj in moved:
        obj.sqlite_table.path = mine
    if moved:
        atomic_write_bytes(path, proto.SerializeToString())
    return bool(moved)


def store(settings: Settings, ws: Workspace):
    """A Feast SDK handle on the workspace's registry and online store."""
    from feast import FeatureStore

    if not (ws.feast_dir / "registry.db").exists():
        raise UserError(f"no Feast registry in {ws.feast_dir}: run `twotower feast apply` first")
    os.environ["TWOTOWER_WORKSPACE"] = str(ws.root)
    if settings.online_store.redis_password is not None:
        os.environ[REDIS_PASSWORD_ENV] = settings.online_store.redis_password.get_secret_value()
    return FeatureStore(repo_path=str(feature_repo(settings)), fs_yaml_file=prepare(settings, ws))
