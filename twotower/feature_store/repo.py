"""A feature repo in a fresh interpreter: parsed, its spec derived, and ``feast apply`` run.

Feast imports each repo file as a top-level module, so two repos with a ``feature_views.py``
cannot be parsed in one process: ``of_repo`` and ``apply_repo`` run ``_main`` in a child
(``python -m twotower.feature_store.repo``). ``apply_repo`` derives, checks (against a served
model's spec too, when given) and applies in that one child, so a repo the towers cannot use
is refused before Feast writes anything; the spec of the last apply is
``<workspace>/feast/spec.json``. The child keeps Feast's own type checks of the user's
declarations (``core.imports``) until those very declarations passed them once.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from twotower.core.errors import FeatureSetChanged, UserError
from twotower.core.features import FeatureSpec, check_spec
from twotower.core.imports import FEAST_TYPECHECKS
from twotower.core.sections import FeatureSettings
from twotower.feature_store.spec import derive


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


def _checked_marker(repo: Path) -> Path:
    """Where the verdict "these declarations pass Feast's type checks" is kept: a file named by
    the digest of the repo's Python files and the versions that judged them (like __pycache__:
    a changed file, Feast or typeguard is judged again)."""
    from importlib.metadata import version

    h = hashlib.sha256(f"{sys.version}\0{version('feast')}\0{version('typeguard')}\0".encode())
    for path in sorted(repo.rglob("*.py")):
        h.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes() + b"\0")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "twotower" / "feast-typechecked" / h.hexdigest()


def _child(repo: Path, fs: FeatureSettings, workspace: Path | None, extra: list[str], env: dict | None = None):
    """Run ``_main`` in a fresh interpreter (see the module docstring); raise its UserError.

    Feast's type checks (typeguard re-parsing Feast's modules: 4.6 of the child's 7.5 s) run
    until the repo's declarations passed them once; the verdict is kept by content
    (``_checked_marker``), so an unchanged repo applied to a new workspace skips them."""
    repo = Path(repo).resolve()
    if not repo.is_dir():
        raise UserError(f"feature repo {repo}: no such directory")
    marker = _checked_marker(repo)
    checks = {} if marker.exists() else {FEAST_TYPECHECKS: "1"}
    with tempfile.TemporaryDirectory(prefix="twotower-spec-") as scratch:
        env = dict(env or os.environ, TWOTOWER_WORKSPACE=str(workspace or scratch), **checks)
        if not checks:
            env.pop(FEAST_TYPECHECKS, None)
        proc = subprocess.run(
            [sys.executable, "-m", "twotower.feature_store.repo", str(repo), fs.model_dump_json(), *extra],
            env=env, capture_output=True, text=True, cwd=str(repo),
        )  # fmt: skip
    if proc.returncode == 0 and checks:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass  # no cache to write: the checks simply run again next time
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

    if spec.popularity_view:  # the platform's own directory source: empty and typed until the first prepare
        directory = Path(spec.item.source(spec.popularity_view).path)
        if not any(directory.glob("*.parquet")):
            directory.mkdir(parents=True, exist_ok=True)
            with atomic_path(directory / "empty.parquet") as tmp:
                pq.write_table(schema.popularity(spec.item, spec.popularity_view).empty_table(), tmp)
    _check_sources(spec)
    embeddings = Workspace(workspace).user_embeddings_dir
    if not any(embeddings.glob("*.parquet")):  # an empty, typed file: valid before the first generation
        embeddings.mkdir(parents=True, exist_ok=True)
        with atomic_path(embeddings / "empty.parquet") as tmp:
            pq.write_table(schema.user_id_embedding(spec.user.join_key, spec.user.id_type).empty_table(), tmp)
    history = Workspace(workspace).recent_clicks_dir
    if spec.history_view and not any(history.glob("*.parquet")):
        history.mkdir(parents=True, exist_ok=True)
        with atomic_path(history / "empty.parquet") as tmp:
            pq.write_table(schema.recent_clicks(spec.user.join_key, spec.user.id_type, spec.item.id_type).empty_table(), tmp)
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

    parser = argparse.ArgumentParser(prog="python -m twotower.feature_store.repo")
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
