"""The platform's one typed configuration.

Precedence (highest first): explicit overrides (CLI flags) > environment variables
(``TWOTOWER_...``, nested with ``__``, e.g. ``TWOTOWER_ONLINE_STORE__TYPE=redis``) > the config
file (``TWOTOWER_CONFIG`` or ``<workspace>/twotower.toml``) > the embedded defaults below.
The defaults run everything on one machine with nothing to start.
"""

from __future__ import annotations

import os
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_WORKSPACE = Path("workspace")


class _Section(BaseModel):
    # Unknown keys are typos; reject them with their name instead of ignoring them.
    model_config = ConfigDict(extra="forbid")


class OnlineStoreSettings(_Section):
    """Feast online store. SQLite in the workspace by default; Redis past one machine."""

    type: Literal["sqlite", "redis"] = "sqlite"
    redis_host: str = "127.0.0.1"
    redis_port: int = Field(6379, ge=1, le=65535)
    # Secrets come from the environment (TWOTOWER_ONLINE_STORE__REDIS_PASSWORD); never logged.
    redis_password: SecretStr | None = None


class DaskSettings(_Section):
    """Batch jobs run on a LocalCluster unless a scheduler address is given."""

    scheduler_address: str | None = None
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "4GiB"
    partitions: int = Field(8, ge=1, description="target partitions for per-day jobs")


class SimulatorSettings(_Section):
    """Defaults of ``twotower simulate`` (each overridable on the command line)."""

    users: int = Field(2_000, ge=10)
    items: int = Field(1_000, ge=10)
    days: int = Field(3, ge=1)
    seed: int = 0
    start_date: date = date(2026, 11, 1)
    categories: int = Field(16, ge=2)
    tags_per_category: int = Field(8, ge=1)
    authors: int = Field(0, ge=0, description="0 = items // 20")
    requests_per_user_day: float = Field(3.0, gt=0)
    impressions_per_request: int = Field(8, ge=1)
    ranked_out_per_request: int = Field(4, ge=0)
    new_users_per_day: float = Field(0.02, ge=0, le=1, description="fraction of the user base")
    new_items_per_day: float = Field(0.05, ge=0, le=1, description="fraction of the catalogue")
    new_interest_share: float = Field(
        0.1, ge=0, le=1, description="share of active users who acquire a new interest each day"
    )
    evening_shift: float = Field(
        0.6, ge=0, le=1, description="how far evening interests differ from daytime ones"
    )


class ModelSettings(_Section):
    """Two-tower model hyper-parameters (see tfrs_models/)."""

    objective: Literal["listwise", "pointwise", "pairwise"] = "listwise"
    id_embedding_dim: int = Field(32, ge=2)
    feature_embedding_dim: int = Field(8, ge=2)
    output_dim: int = Field(64, ge=2)
    hidden_units: list[int] = Field(default_factory=lambda: [128])
    temperature: float = Field(0.05, gt=0)
    learning_rate: float = Field(0.05, gt=0)
    incremental_learning_rate: float = Field(0.05, gt=0)
    batch_size: int = Field(512, ge=1)
    num_easy_negatives: int = Field(64, ge=0)
    hard_negatives_per_example: int = Field(2, ge=0)
    hard_negative_weight: float = Field(1.0, ge=0)
    pairwise_margin: float = Field(0.2, ge=0)
    oov_buckets: int = Field(64, ge=1)
    max_tags: int = Field(3, ge=1)


class ServingSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    default_k: int = Field(100, ge=1)
    max_k: int = Field(1000, ge=1)
    max_batch: int = Field(256, ge=1)
    channel: str = "two_tower"

    @model_validator(mode="after")
    def _k_within_cap(self) -> "ServingSettings":
        if self.default_k > self.max_k:
            raise ValueError(f"serving.default_k ({self.default_k}) exceeds serving.max_k ({self.max_k})")
        return self


class IndexSettings(_Section):
    n_trees: int = Field(50, ge=1)
    search_k: int = Field(-1, description="-1: n_trees * k * search_k_factor")
    search_k_factor: int = Field(20, ge=1)
    metric: Literal["angular", "dot"] = "dot"


class Settings(BaseSettings):
    """Everything configurable, in one place."""

    model_config = SettingsConfigDict(
        env_prefix="TWOTOWER_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    workspace: Path = DEFAULT_WORKSPACE
    feast_project: str = "twotower"
    online_store: OnlineStoreSettings = Field(default_factory=OnlineStoreSettings)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the option."""


class _FileSource(PydanticBaseSettingsSource):
    """Reads the TOML config file, if there is one."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_file_path()
        if path is None:
            return {}
        try:
            return tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc


def config_file_path() -> Path | None:
    explicit = os.environ.get("TWOTOWER_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"TWOTOWER_CONFIG={explicit}: no such file")
        return path
    ws = Path(os.environ.get("TWOTOWER_WORKSPACE", DEFAULT_WORKSPACE))
    candidate = ws / "twotower.toml"
    return candidate if candidate.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; a bad value raises ConfigError naming the option."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "workspace" in overrides:
        # The config file lives in the workspace, so the workspace must be known first.
        os.environ["TWOTOWER_WORKSPACE"] = str(overrides["workspace"])
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
    settings.workspace = settings.workspace.expanduser().resolve()
    return settings
