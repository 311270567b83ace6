"""The sections of the typed configuration (``config.Settings`` holds one of each).

Each section is a pydantic model that rejects unknown keys by name; the defaults are the
embedded one-machine defaults. Load them through ``config.load_settings``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


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
    # A dead or hung store must not hang a request: every call to it is bounded (serving then
    # answers with the generation's popular items and says why, see serving/online_health.py).
    timeout_s: float = Field(
        1.0, gt=0, le=60,
        description="longest wait for one online-store call: Redis socket read/write timeout; "
        "SQLite: how long serving's reads wait for a lock",
    )  # fmt: skip
    connect_timeout_s: float = Field(0.5, gt=0, le=60, description="Redis: longest wait to open a connection")
    write_batch_rows: int = Field(
        10_000, ge=1, le=1_000_000,
        description="rows per online_write_batch call (one SQLite transaction / one Redis pipeline each) when a "
        "publish writes a generation's user ID embeddings, and per batch of feast materialize (profiles, history)",
    )  # fmt: skip


class DaskSettings(_Section):
    """Batch jobs run on a LocalCluster unless a scheduler address is given."""

    scheduler_address: str | None = None
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "4GiB"
    partitions: int = Field(8, ge=1, description="target partitions for per-day jobs")
    processes_from_events: int = Field(
        200_000, ge=0,
        description="a local cluster runs worker processes for a full update of at least this many events; a "
        "smaller one runs its workers as threads of the update's own process, which saves each worker's spawn and "
        "TensorFlow import (~6 CPU-s, more than a small day's whole job). 0 = always processes",
    )


class FeatureSettings(_Section):
    """The towers' inputs: feature services of the feature repo (twotower/core/features.py).

    Every field of a service's views is one input of its tower; its kind follows from the Feast
    dtype unless ``Field.tags`` say otherwise (``kind``, ``buckets``, ``max_len``).
    """

    user_service: str = Field("user_tower", description="Feast feature service of the user tower's inputs")
    item_service: str = Field("item_tower", description="Feast feature service of the item tower's inputs")
    embedding_view: str = Field(
        "user_id_embedding",
        description="the platform's own view of user ID embeddings (fields embedding, generation) in the user "
        "service: written by full updates and incremental pushes, not a profile feature",
    )
    history_view: str = Field(
        "user_recent_clicks",
        description="the platform's own view (field items: Array of the item ID type) of each user's recently clicked "
        "items, optional in the user service: written by full updates and incremental pushes, read to exclude seen items",
    )
    popularity_view: str = Field(
        "item_popularity",
        description="the platform's own view of each item's recent clicks, optional in the item service: numeric "
        "fields, each tagged decay_days (clicks decayed by exp(-age / decay_days), as log1p), written by full updates",
    )
    history_len: int = Field(50, ge=1, description="items kept per user in features.history_view, newest first")
    history_days: int = Field(30, ge=1, description="days of events a full update reads to rebuild features.history_view")
    context: list[Literal["hour", "weekday"]] = Field(
        default_factory=lambda: ["hour"], description="request context inputs of the user tower (UTC)"
    )
    default_buckets: int = Field(1000, ge=2, description="hash buckets of a categorical field without a buckets tag")
    default_max_len: int = Field(5, ge=1, description="values kept of a list field without a max_len tag")


class ModelSettings(_Section):
    """Two-tower model hyper-parameters (see tfrs_models/)."""

    objective: Literal["listwise", "pointwise", "pairwise"] = "listwise"
    id_embedding_dim: int = Field(32, ge=2)
    feature_embedding_dim: int = Field(8, ge=2)
    output_dim: int = Field(64, ge=2)
    hidden_units: list[int] = Field(default_factory=lambda: [128])
    temperature: float = Field(0.05, gt=0)
    learning_rate: float = Field(0.05, gt=0)
    incremental_learning_rate: float = Field(
        0.5, gt=0, description="rate of the ID tables in the incremental mode (id_optimizer, fresh state per chain)"
    )
    incremental_initial_accumulator: float = Field(
        0.1, gt=0,
        description="Adagrad initial accumulator of the incremental mode. Large next to a step's squared gradient, "
        "so a user's first steps go along the gradient (a near-zero accumulator makes Adagrad's first step "
        "lr x sign(gradient): measured, 10 clicks in one step left 3 of 5 users' new category out of their top-50)",
    )
    # The ID tables' own optimiser (full mode). Adagrad scales each row's step by that row's own
    # gradient history, so a row touched a few times a day still moves by ~id_learning_rate per
    # touch; the small initial accumulator is what lets it (Keras' default 0.1 is ~1e5 x a row's
    # squared gradient at batch 512 and kept the rows at their initialisation).
    id_optimizer: Literal["adagrad", "adam"] = "adagrad"
    id_learning_rate: float = Field(0.05, gt=0, description="full mode: rate of the ID embedding tables")
    id_initial_accumulator: float = Field(1e-6, gt=0, description="full mode: Adagrad initial accumulator of the ID tables")
    id_init_scale: float = Field(0.05, gt=0, description="ID rows start uniform in [-scale, scale]")
    batch_size: int = Field(512, ge=1)
    num_easy_negatives: int = Field(
        512, ge=0,
        description="uniformly drawn extra negatives per batch (shared by its rows). 64 covered 0.6% of a "
        "10,000-movie catalogue per step and left tail items at ranks 30-100 (MovieTweetings 100K recall@100 "
        "0.362 with 64, 0.406 with 512; the simulator's 4-day cycle 0.845 / 0.855)",
    )
    hard_negatives_per_example: int = Field(2, ge=0)
    hard_negative_weight: float = Field(1.0, ge=0)
    pairwise_margin: float = Field(0.2, ge=0)
    pairwise_loss: Literal["logistic", "margin"] = Field(
        "logistic", description="pairwise objective: softplus(-(s+ - s-)/T) or max(0, margin - (cos+ - cos-))"
    )
    oov_buckets: int = Field(
        1, ge=1,
        description="OOV rows per ID table (an unknown ID -> row hash(id) mod buckets). One shared 'unknown' row "
        "is trained by oov_training_rate of all lookups; split over 64 buckets each row was noise (demo world, "
        "cold users' next-day recall@100: 0.51 with 64, 0.63 with 1)",
    )
    oov_training_rate: float = Field(
        0.05, ge=0, lt=1, description="share of full-mode lookups routed to the OOV rows so unseen IDs get a trained vector"
    )
    min_user_clicks: int = Field(
        1, ge=0,
        description="clicks a user needs in a full update's training days to get an own ID row (0: every known user); "
        "until then the user is served through the OOV row + profile, the vector the model trained for unseen users",
    )
    optimizer: Literal["adagrad", "adam"] = "adagrad"
    shuffle_buffer: int = Field(50_000, ge=1, description="full mode: records shuffled in memory on top of shuffled shards")


class ServingSettings(_Section):
    """Online recall (serving/): ``twotower serve`` and ``twotower recall``."""

    host: str = Field("127.0.0.1", description="interface `twotower serve` binds; non-loopback needs allow_public_bind")
    allow_public_bind: bool = Field(
        False,
        description="let serving.host be a non-loopback address: the API has no authentication or TLS, so exposing "
        "it beyond this machine must be a deliberate choice (behind a proxy or inside a trusted network)",
    )
    port: int = Field(8000, ge=1, le=65535)
    default_k: int = Field(100, ge=1)
    exclude_seen: bool = Field(
        False, description="leave out each user's recently clicked items (features.history_view) unless a request says"
    )
    cold_without_profile: Literal["popular", "oov_profile"] = Field(
        "popular",
        description="a user tower with no profile input (ID-only): a user without an own embedding gets the "
        "generation's popular items (popular) or the tower's OOV row, one vector for all of them (oov_profile)",
    )
    max_k: int = Field(1000, ge=1)
    max_batch: int = Field(256, ge=1)
    channel: str = "two_tower"
    online_read: Literal["direct", "sdk"] = Field(
        "direct",
        description="direct: the online store's online_read (one read per view); sdk: "
        "FeatureStore.get_online_features (slower, see serving/online.py)",
    )
    poll_interval_s: float = Field(0.5, gt=0, description="how often CURRENT is checked for a new generation")
    verify_checksums: bool = Field(True, description="check the served artifacts' checksums before loading a generation")
    warm_index: bool = Field(True, description="read the index file once on load so first queries hit the page cache")
    max_body_bytes: int = Field(65_536, ge=256, description="larger request bodies get HTTP 413")
    max_url_bytes: int = Field(2_048, ge=64, description="longer request targets (path + query) get HTTP 414")
    max_header_bytes: int = Field(8_192, ge=512, description="larger request headers (all of them) get HTTP 431")
    max_concurrency: int = Field(
        1_024, ge=1, description="connections + requests in flight per worker; above it new ones get HTTP 503"
    )
    workers: int = Field(1, ge=1, description="uvicorn worker processes of `twotower serve`")
    latency_snapshot_s: float = Field(
        10.0, ge=0,
        description="how often each server process writes its latency histograms to <workspace>/serving (the report "
        "reads them); also at shutdown; 0: never",
    )  # fmt: skip
    online_retry_s: float = Field(
        1.0, ge=0,
        description="after a failed online-store read, requests are answered degraded (popular items) "
        "without trying the store for this long; then one request (or /health) tries again",
    )  # fmt: skip

    @model_validator(mode="after")
    def _k_within_cap(self) -> "ServingSettings":
        if self.default_k > self.max_k:
            raise ValueError(f"serving.default_k ({self.default_k}) exceeds serving.max_k ({self.max_k})")
        return self


class FullUpdateSettings(_Section):
    """The nightly full update (``twotower full-update DAY``)."""

    holdout_share: float = Field(
        0.02, gt=0, lt=0.5, description="share of the day's requests held out of training for evaluation"
    )
    eval_queries: int = Field(2000, ge=10, description="held-out clicks evaluated (exact recall over all items)")
    promotion_min_ratio: float = Field(
        0.8, ge=0, description="publish only if recall@100 >= ratio x the parent's on the same held-out clicks"
    )
    promotion_min_clicks: int = Field(
        50, ge=1,
        description="held-out clicks needed before a recall@100 (all clicks, or the cold users') is judged by the "
        "promotion check: on fewer, one click moves it by 2+ points",
    )
    backfill_epochs: int = Field(3, ge=1, description="passes over the history of `twotower backfill START END`")
    backfill_id_rates: list[float] = Field(
        default_factory=lambda: [0.05, 0.01, 0.003],
        description="ID-table learning rates a backfill tries on the history but its last 2 days (recall@100 of "
        "those days' clicks of users with an own row); the best trains the generation and every full update after "
        "it (twotower/pipelines/id_rate.py). One rate, or model.id_learning_rate set: no choice",
    )

    @field_validator("backfill_id_rates")
    @classmethod
    def _positive_rates(cls, rates: list[float]) -> list[float]:
        if not rates or any(not r > 0 for r in rates):
            raise ValueError(f"full_update.backfill_id_rates must be positive learning rates, got {rates}")
        return rates
    popular_decay_days: float = Field(
        7.0, ge=0,
        description="the generation's popular items (serving's fallback) rank each item's clicks decayed by "
        "exp(-age / this many days) (materialize/popularity.py); 0: the day's clicks only",
    )
    seed: int = 0


class IndexSettings(_Section):
    """The item index: Annoy files (default) or a Milvus collection per generation. Its search
    parameter is not configured: each build measures it against exact top-k (manifest).

    With several Annoy shards ``search_k`` is per shard (every shard inspects that many nodes).
    """

    backend: Literal["annoy", "milvus"] = Field(
        "annoy", description="annoy: memory-mapped files in the generation; milvus: a collection per generation on "
        "the Milvus server at index.milvus_uri (twotower/index/milvus_index.py)",
    )  # fmt: skip
    milvus_uri: str = Field("", description="the Milvus server, e.g. http://127.0.0.1:19530 (Milvus Lite: `milvus-lite server`)")
    milvus_prefix: str = Field(
        "twotower", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$",
        description="collections are <prefix>_<id>, the served one aliased <prefix>_serving; one prefix per workspace",
    )  # fmt: skip
    milvus_index_type: Literal["HNSW", "IVF_FLAT", "FLAT"] = "HNSW"
    milvus_m: int = Field(16, ge=2, le=2048, description="HNSW: links per node")
    milvus_ef_construction: int = Field(200, ge=8, description="HNSW: candidates while building")
    milvus_nlist: int = Field(1024, ge=1, description="IVF_FLAT: clusters")
    milvus_keep: int = Field(3, ge=1, description="collections of the last N served generations are kept (rollback depth)")
    milvus_timeout_s: float = Field(1.0, gt=0, description="a query's bound; past it the request is answered degraded")
    n_trees: int = Field(50, ge=1)
    target_recall: float = Field(0.95, gt=0, le=1, description="search_k is tuned until recall@100 vs exact reaches this")
    tuning_queries: int = Field(300, ge=10, description="held-out user vectors used to tune search_k")
    shards: int = Field(
        1, ge=1, le=1024,
        description="Annoy shards the item vectors are split into (by a hash of item_id, so an item stays "
        "in its shard day to day while the count is unchanged); each shard is built as its own Dask task "
        "and queries merge the shards' top-k. 1 = one index file (the flat layout). With "
        "index.max_shard_mib set this is the minimum: more shards are used until every shard fits",
    )  # fmt: skip
    max_shard_mib: float | None = Field(
        None, gt=0,
        description="memory bound per shard in MiB: the estimated Annoy file size of every shard (what its "
        "builder holds in RAM and a server maps) must fit, so the shard count is raised until it does; the "
        "built file sizes are checked against it (UserError if one is over) and recorded in the manifest. "
        "None = no bound",
    )  # fmt: skip

    @model_validator(mode="after")
    def _milvus_needs_a_server(self) -> "IndexSettings":
        if self.backend == "milvus":
            if not self.milvus_uri:
                raise ValueError("index.backend = milvus needs index.milvus_uri (e.g. http://127.0.0.1:19530)")
            if self.shards > 1 or self.max_shard_mib is not None:
                raise ValueError("index.shards / index.max_shard_mib are Annoy's: Milvus distributes a collection itself")
        return self


class IngestSettings(_Section):
    """``twotower ingest``: bring-your-own-data into the offline store (see docs/data-schema.md)."""

    max_reported_rows: int = Field(
        5, ge=1, description="offending rows listed per problem in an ingest error message"
    )
    rows_per_file: int = Field(
        1_000_000, ge=1, description="events per part-*.parquet file inside a day partition"
    )


class ValidationSettings(_Section):
    """Bounds of the daily data-quality gate (validation/).

    Day-over-day bands compare a day with the nearest earlier day in the offline store; the
    first day (no earlier day) is held only to the absolute sanity bounds. A "never-seen" ID is
    one that occurs in the day's events but in no earlier day's events (brand-new signups and
    items count too: they are what the previous model has no row for).
    """

    row_count_tolerance: float = Field(
        0.5, ge=0, description="events of the day within previous day * (1 +- tolerance)"
    )
    click_rate_tolerance: float = Field(
        0.5, ge=0, description="clicks/impressions within previous day's rate * (1 +- tolerance)"
    )
    min_events: int = Field(1, ge=0, description="absolute lower bound on a day's events")
    max_events: int = Field(1_000_000_000, ge=1, description="absolute upper bound on a day's events")
    min_click_rate: float = Field(0.001, ge=0, le=1, description="absolute bounds on clicks/impressions")
    require_impressions: bool = Field(
        True, description="a day must log impressions (its click rate is judged); false for click-only logs "
        "such as ratings, where the click-rate band does not apply",
    )
    max_click_rate: float = Field(0.5, ge=0, le=1)
    max_new_user_share: float = Field(
        0.5, ge=0, le=1, description="share of the day's distinct users never seen on earlier days"
    )
    max_new_item_share: float = Field(
        0.5, ge=0, le=1, description="share of the day's distinct items never seen on earlier days"
    )
    examples: int = Field(
        20, ge=1, le=200, description="unexpected values GX reports per failed expectation"
    )
    keep_batches: bool = Field(
        False, description="keep the staged frames GX validated (gx/uncommitted/batches) after a run"
    )
    docs_index_days: int = Field(
        7, ge=1, description="gate runs listed on the data docs index page (older pages stay on disk)"
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> "ValidationSettings":
        if self.min_events > self.max_events:
            raise ValueError(
                f"validation.min_events ({self.min_events}) exceeds validation.max_events ({self.max_events})"
            )
        if self.min_click_rate > self.max_click_rate:
            raise ValueError(
                f"validation.min_click_rate ({self.min_click_rate}) exceeds "
                f"validation.max_click_rate ({self.max_click_rate})"
            )
        return self


class StreamSettings(_Section):
    """The event stream the incremental updater consumes (twotower/stream/).

    ``file``: an append-only log in ``<workspace>/stream/<name>/`` with committed offsets in
    files (nothing to start). ``redis``: a Redis Stream ``<name>`` whose consumer group
    ``<group>`` holds the committed offset (its last-delivered ID).
    """

    type: Literal["file", "redis"] = "file"
    name: str = Field("events", pattern=r"^[A-Za-z0-9_.:-]+$", description="stream (Redis key / log directory)")
    group: str = Field("incremental", pattern=r"^[A-Za-z0-9_.:-]+$", description="consumer group of the updater")
    redis_host: str = "127.0.0.1"
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_db: int = Field(0, ge=0)
    # From the environment (TWOTOWER_STREAM__REDIS_PASSWORD); never logged.
    redis_password: SecretStr | None = None


class IncrementalSettings(_Section):
    """Intraday incremental update (``twotower incremental``): ID embeddings only, time order."""

    batch_seconds: float = Field(
        2.0, ge=0, description="--follow: a micro-batch starts at most this often (0 = as soon as events arrive)"
    )
    max_events: int = Field(20_000, ge=1, description="stream entries per micro-batch at most")
    batch_size: int = Field(
        64, ge=1, description="examples per training step: small steps follow the stream's time order closely"
    )
    publish_every: float = Field(
        0.0, ge=0, description="seconds between pushes to the online store (0 = after every micro-batch)"
    )
    poll_seconds: float = Field(0.1, gt=0, description="--follow: how often an idle stream is polled")
    hard_negative_lookback: int = Field(
        50_000, ge=0, description="stream entries before a micro-batch searched for its clicks' ranked_out events"
    )
    compact_every: int = Field(
        50, ge=1, description="state deltas (one per publish) folded into a new snapshot this often"
    )
    freshness_window: int = Field(10_000, ge=10, description="pushed users the rolling freshness percentiles cover")
