"""The platform's one typed configuration.

Precedence (highest first): explicit overrides (CLI flags) > environment variables
(``TWOTOWER_...``, nested with ``__``, e.g. ``TWOTOWER_ONLINE_STORE__TYPE=redis``) > the config
file (``TWOTOWER_CONFIG`` or ``<workspace>/twotower.toml``) > the embedded defaults below.
The defaults run everything on one machine with nothing to start.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from twotower.core.sections import (
    OnlineStoreSettings,
    DaskSettings,
    FeatureSettings,
    ModelSettings,
    ServingSettings,
    FullUpdateSettings,
    IndexSettings,
    IngestSettings,
    ValidationSettings,
    StreamSettings,
    IncrementalSettings,
)
from twotower.core.research_sections import ReplaySettings, SimulatorSettings

DEFAULT_WORKSPACE = Path("workspace")
__all__ = ["ConfigError", "Settings", "load_settings", "config_file_path", "DEFAULT_WORKSPACE",
    "SECRETS", "OnlineStoreSettings", "DaskSettings", "SimulatorSettings", "FeatureSettings", "ModelSettings",
    "ServingSettings", "FullUpdateSettings", "IndexSettings", "IngestSettings",
    "ValidationSettings", "StreamSettings", "IncrementalSettings", "ReplaySettings"]


class Settings(BaseSettings):
    """Everything configurable, in one place."""

    model_config = SettingsConfigDict(
        env_prefix="TWOTOWER_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    workspace: Path = DEFAULT_WORKSPACE
    feast_project: str = "twotower"
    feature_repo: Path | None = Field(
        None, description="the Feast feature repo whose feature services declare the towers' inputs (default: the one "
        "shipped with the package, the simulator's world); in twotower.toml relative to that file"
    )
    online_store: OnlineStoreSettings = Field(default_factory=OnlineStoreSettings)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    full_update: FullUpdateSettings = Field(default_factory=FullUpdateSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    incremental: IncrementalSettings = Field(default_factory=IncrementalSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        workspace = getattr(init_settings, "init_kwargs", {}).get("workspace")
        return (init_settings, env_settings, _FileSource(settings_cls, workspace))


# Secrets are read from the environment only: a config file is copied, shared and kept in the
# workspace, the environment is not (tests/test_security.py).
SECRETS = (("online_store", "redis_password"), ("stream", "redis_password"))


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the option."""


class _FileSource(PydanticBaseSettingsSource):
    """Reads the TOML config file, if there is one."""

    def __init__(self, settings_cls: type[BaseSettings], workspace: Path | str | None):
        super().__init__(settings_cls)
        self.workspace = workspace

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_file_path(self.workspace)
        if path is None:
            return {}
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        for section, key in SECRETS:
            if isinstance(data.get(section), dict) and key in data[section]:
                env = f"TWOTOWER_{section.upper()}__{key.upper()}"
                raise ConfigError(
                    f"config file {path}: [{section}] {key} is a secret and is read only from the environment "
                    f"({env}): remove it from the file"
                )
        repo = data.get("feature_repo")
        if isinstance(repo, str) and not Path(repo).expanduser().is_absolute():
            data["feature_repo"] = str(path.parent / repo)  # relative to the config file
        return data


def config_file_path(workspace: Path | str | None = None) -> Path | None:
    explicit = os.environ.get("TWOTOWER_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"TWOTOWER_CONFIG={explicit}: no such file")
        return path
    ws = Path(workspace or os.environ.get("TWOTOWER_WORKSPACE") or DEFAULT_WORKSPACE)
    candidate = ws / "twotower.toml"
    return candidate if candidate.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; a bad value raises ConfigError naming the option."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
    settings.workspace = settings.workspace.expanduser().resolve()
    if settings.feature_repo is not None:
        settings.feature_repo = settings.feature_repo.expanduser().resolve()
    return settings
