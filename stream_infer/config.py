"""The settings tree: built once at start-up, frozen, passed down.

Environment variables use the ``STREAM_INFER_`` prefix and ``__`` for nesting, e.g.
``STREAM_INFER_WORKER__MAX_BATCH_SIZE=512``. ``KAFKA_BOOTSTRAP`` (no prefix) points every
component at an existing cluster instead of the embedded broker. Nothing else in the code base
reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream_infer.errors import ConfigError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Frozen):
    """Where the cluster is and how to talk to it."""

    bootstrap_servers: str | None = Field(
        default=None, description="host:port list; None means start the embedded broker"
    )
    embedded_broker: Literal["tansu"] = "tansu"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle the brokers' certificates chain to (SSL, SASL_SSL)"
    )
    ssl_cert_file: Path | None = Field(
        default=None, description="mTLS: this client's PEM certificate (with ssl_key_file)"
    )
    ssl_key_file: Path | None = Field(
        default=None, description="mTLS: this client's PEM private key (with ssl_cert_file)"
    )
    ssl_key_password: SecretStr | None = Field(default=None, description="the key's passphrase")
    ssl_endpoint_identification: bool = Field(
        default=True, description="check the broker's certificate names the host dialled"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    oauth_token_url: str | None = Field(
        default=None, description="OAUTHBEARER: the OIDC token endpoint (client credentials)"
    )
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_scope: str | None = None
    extra: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka properties passed to every confluent-kafka client as given "
        "(not to the label processor's aiokafka); keys in DENIED_EXTRA are refused, and a key "
        "a client sets for its role (the producer's linger.ms, ...) keeps the client's value",
    )
    extra_secret: dict[str, SecretStr] = Field(
        default_factory=dict, description="like extra, for values that must never be shown"
    )
    startup_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="how long a process waits for the cluster at start (reachable, "
        "authenticated, its assignment held) before it exits naming why",
    )
    session_timeout_ms: int = Field(default=6000, ge=1000)
    client_id: str = "stream-infer"
    message_max_bytes: int = Field(
        default=1_048_576,
        ge=65_536,
        description="largest record we produce or accept; equals max.message.bytes in topics/",
    )

    #: librdkafka keys ``extra``/``extra_secret`` may not set: the delivery guarantees (or a
    #: typed setting above) decide them, and an override would silently break one.
    DENIED_EXTRA: ClassVar[frozenset[str]] = frozenset(
        {
            "enable.auto.offset.store",
            "enable.auto.commit",
            "auto.commit.enable",
            "enable.idempotence",
            "enable.gapless.guarantee",
            "acks",
            "request.required.acks",
            "isolation.level",
            "transactional.id",
            "allow.auto.create.topics",
            "group.id",
            "group.instance.id",
            "message.max.bytes",
            "enable.partition.eof",
            "bootstrap.servers",
            "security.protocol",
            "sasl.mechanism",
            "sasl.mechanisms",
            "sasl.username",
            "sasl.password",
            "ssl.ca.location",
            "ssl.certificate.location",
            "ssl.key.location",
            "ssl.key.password",
            "ssl.endpoint.identification.algorithm",
        }
    )

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        problems = list(self._security_problems())
        for key in [*self.extra, *self.extra_secret]:
            if key.strip().lower() in self.DENIED_EXTRA:
                problems.append(
                    f"kafka.extra key {key!r} is refused: the delivery guarantees or a typed "
                    "kafka.* setting decide it"
                )
        if both := sorted(set(self.extra) & set(self.extra_secret)):
            problems.append(f"kafka.extra and kafka.extra_secret both set {both}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _security_problems(self) -> list[str]:
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        out: list[str] = []
        if self.sasl_mechanism and not sasl:
            out.append(
                f"kafka.sasl_mechanism={self.sasl_mechanism} needs kafka.security_protocol "
                f"SASL_SSL or SASL_PLAINTEXT, not {self.security_protocol}"
            )
        if sasl and not self.sasl_mechanism:
            out.append(f"kafka.security_protocol={self.security_protocol} needs sasl_mechanism")
        if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not (
            self.sasl_username and self.sasl_password
        ):
            out.append(
                f"kafka.sasl_mechanism={self.sasl_mechanism} needs sasl_username and sasl_password"
            )
        oauth = (self.oauth_token_url, self.oauth_client_id, self.oauth_client_secret)
        if self.sasl_mechanism == "OAUTHBEARER" and not all(oauth):
            out.append(
                "kafka.sasl_mechanism=OAUTHBEARER needs oauth_token_url, oauth_client_id "
                "and oauth_client_secret"
            )
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            out.append("mTLS needs kafka.ssl_cert_file and kafka.ssl_key_file together")
        if self.ssl_key_password is not None and self.ssl_key_file is None:
            out.append("kafka.ssl_key_password is set without kafka.ssl_key_file")
        files = (self.ssl_ca_file, self.ssl_cert_file, self.ssl_key_file)
        if not tls and any(f is not None for f in files):
            out.append(
                f"kafka.ssl_* files are set but kafka.security_protocol={self.security_protocol} "
                "does not use TLS"
            )
        return out

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings shared by every client (producer, consumer, admin): built by
        :func:`stream_infer.kafka.security.librdkafka_config`, the one place that does.

        Raises:
            ConfigError: no bootstrap is set, or a TLS file is missing (naming the setting).
        """
        from stream_infer.kafka.security import librdkafka_config

        return librdkafka_config(self)


class TopicSettings(_Frozen):
    """Topic names; their layout lives in ``topics/*.json``."""

    transactions: str = "transactions"
    labels: str = "transaction-labels"
    scores: str = "scores"
    scores_shadow: str = "scores-shadow"
    dead_letter: str = "transactions-dlq"
    model_control: str = "model-control"
    specs_dir: Path = Path("topics")
    partitions: int | None = Field(
        default=None, ge=1, description="override every spec's partition count (tests)"
    )
    replication_factor: int = Field(
        default=3,
        ge=1,
        description="replicas of every topic `topics apply` creates; a one-node (embedded or "
        "test) broker needs 1",
    )
    min_insync_replicas: int = Field(
        default=2,
        ge=1,
        description="min.insync.replicas of every topic created: an acks=all write needs this "
        "many replicas in sync, so one broker may fail without losing an acknowledged record",
    )


class BatchSettings(_Frozen):
    """Micro-batching shared by the worker and the sidecar."""

    max_batch_size: int = Field(default=512, ge=1, le=65536)
    max_wait_ms: float = Field(default=5.0, ge=0)


class WorkerSettings(_Frozen):
    """The scoring worker's loop."""

    group_id: str = "stream-infer-scoring"
    max_in_flight_batches: int = Field(
        default=32, ge=1, description="batches produced but not yet acknowledged: bounds memory"
    )
    pause_after_s: float = Field(
        default=0.5, ge=0, description="pause partitions when acks stall longer than this"
    )
    emit_features: bool = False
    drain_timeout_s: float = Field(default=30.0, gt=0)
    processing_guarantee: Literal["at-least-once", "exactly-once"] = Field(
        default="at-least-once",
        description="exactly-once: scores, dead letters and offsets in one Kafka transaction",
    )
    instance_id: str | None = Field(
        default=None,
        description="static group membership (group.instance.id): a restarted instance takes "
        "its partitions back at once instead of waiting for a rebalance; also names its "
        "transactional.id. Stable per replica (e.g. a StatefulSet pod name)",
    )
    group_protocol: Literal["classic", "consumer"] = Field(
        default="classic",
        description="consumer: KIP-848's broker-driven rebalances (Kafka 4+; the broker then "
        "owns the session timeout, heartbeats and assignor); classic: the client-side protocol",
    )
    assignment_strategy: Literal["range,roundrobin", "cooperative-sticky", "range"] = Field(
        default="range,roundrobin",
        description="classic protocol's partition.assignment.strategy; cooperative-sticky "
        "moves only the partitions that change owner instead of revoking all of them",
    )
    transactional_id: str | None = Field(
        default=None,
        description="exactly-once: this instance's transactional.id (stable across restarts "
        "so a restarted instance fences its zombie); None = <group_id>-<instance_id or "
        "hostname>",
    )
    input_isolation: Literal["read_committed", "read_uncommitted"] = Field(
        default="read_committed",
        description="isolation.level of the input consumer; read_committed also makes a "
        "restarted consumer wait for its predecessor's transactional offsets to settle",
    )
    transaction_interval_ms: float = Field(
        default=100.0, gt=0, description="exactly-once: how long one transaction spans batches"
    )
    store_retry_initial_s: float = Field(
        default=0.05, gt=0, description="first backoff after a store failure"
    )
    store_retry_max_s: float = Field(
        default=2.0, gt=0, description="longest backoff between store retries (no give-up)"
    )
    dead_letter_max_bytes: int = Field(
        default=262_144,
        ge=4096,
        description="a dead letter larger than this keeps only a prefix of the original "
        "(plus its size and sha256); must stay below kafka.message_max_bytes",
    )
    dead_letter_prefix_bytes: int = Field(
        default=65_536, ge=0, description="how much of an oversized original a dead letter keeps"
    )
    statistics_interval_ms: int = Field(default=1000, ge=0)
    max_poll_interval_ms: int = Field(
        default=300_000,
        ge=10_000,
        description="also the group's rebalance timeout: how long a rebalance waits for a "
        "member that stopped polling (a SIGKILLed one) before going on without it",
    )
    queued_max_messages_kbytes: int = Field(default=16384, ge=1024)


class ModelSettings(_Frozen):
    """Which artifact to serve and where it runs."""

    registry_dir: Path = Path("registry")
    registry_backend: Literal["folder", "mlflow"] = Field(
        default="folder",
        description="folder: registry_dir; mlflow: an MLflow model registry (the mlflow extra; "
        "registry_dir then holds its local artifact copies and write locks)",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="mlflow backend's tracking URI; None = sqlite in registry_dir"
    )
    name: str = "fraud"
    version: int | None = Field(default=None, description="None = the champion")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threshold: float = Field(default=0.5, ge=0, le=1)
    intra_op_threads: int = Field(default=1, ge=0)
    warmup_batches: int = Field(default=3, ge=0)
    poll_interval_s: float = Field(
        default=1.0, gt=0, description="how often workers and sidecars read the registry's roles"
    )


class MetricsSettings(_Frozen):
    """Prometheus exposition."""

    enabled: bool = True
    port: int = Field(default=9108, ge=0, le=65535)
    host: str = "127.0.0.1"


class RedisSettings(_Frozen):
    """Online store / cache. Redis is used when ``url`` is set (``mode`` cluster: ``url`` is a
    seed node) or ``mode`` is ``sentinel``; otherwise the embedded SQLite defaults.

    Credentials and TLS are typed fields (``username``, ``password``, ``tls_*``); a ``rediss://``
    URL turns TLS on as ``tls`` does. Checked at start: a missing certificate file, TLS files
    with TLS off, a sentinel mode without sentinels... each refuse to start naming the field.
    """

    url: SecretStr | None = Field(
        default=None, description="redis://[user:password@]host[:port][/db] or rediss://..."
    )
    mode: Literal["standalone", "sentinel", "cluster"] = "standalone"
    username: str | None = Field(default=None, description="ACL user (wins over the URL's)")
    password: SecretStr | None = Field(default=None, description="wins over the URL's")
    tls: bool = Field(default=False, description="TLS (also on for a rediss:// URL)")
    tls_ca_file: Path | None = Field(default=None, description="CA bundle that signs the server")
    tls_cert_file: Path | None = Field(default=None, description="client certificate (mTLS)")
    tls_key_file: Path | None = Field(default=None, description="its private key")
    tls_key_password: SecretStr | None = None
    tls_verify: Literal["required", "none"] = Field(
        default="required", description="none: accept any server certificate (tests only)"
    )
    tls_check_hostname: bool = True
    sentinels: tuple[str, ...] = Field(default=(), description="sentinel mode: host:port list")
    sentinel_master: str = Field(default="mymaster", description="the monitored master's name")
    sentinel_username: str | None = None
    sentinel_password: SecretStr | None = None
    cluster_nodes: tuple[str, ...] = Field(
        default=(), description="cluster mode: more seed nodes (host:port) besides the URL's"
    )
    key_prefix: str = Field(
        default="si",
        pattern=r"^[^{}\s]+$",
        description="namespace for every key we write (no braces: they are hash tags)",
    )
    socket_timeout_s: float = Field(
        default=1.0, gt=0, description="one call's bound: an unanswering Redis fails fast"
    )
    connect_timeout_s: float = Field(default=1.0, gt=0)

    @property
    def enabled(self) -> bool:
        """Whether state lives in Redis (else the embedded SQLite files)."""
        return self.url is not None or self.mode == "sentinel"

    @property
    def tls_enabled(self) -> bool:
        url = self.url.get_secret_value() if self.url is not None else ""
        return self.tls or url.startswith("rediss://")

    @model_validator(mode="after")
    def _check(self) -> RedisSettings:
        from urllib.parse import urlsplit

        def bad(msg: str) -> ValueError:
            return ValueError(f"redis settings: {msg}")

        url = self.url.get_secret_value() if self.url is not None else None
        if url is not None:
            parts = urlsplit(url)
            schemes = ("redis", "rediss") + (("unix",) if self.mode == "standalone" else ())
            if parts.scheme not in schemes:
                raise bad(f"redis.url must start with {' or '.join(s + '://' for s in schemes)}")
            if self.mode == "cluster" and parts.path.strip("/") not in ("", "0"):
                raise bad("redis.url: a Redis Cluster has database 0 only")
        if self.mode == "cluster" and url is None:
            raise bad("redis.mode=cluster needs redis.url (a seed node)")
        if self.mode == "sentinel" and not self.sentinels:
            raise bad("redis.mode=sentinel needs redis.sentinels (host:port, ...)")
        for field in ("sentinels", "cluster_nodes"):
            for node in getattr(self, field):
                host, _, port = node.rpartition(":")
                if not host or not port.isdigit():
                    raise bad(f"redis.{field}: {node!r} is not host:port")
        if self.sentinels and self.mode != "sentinel":
            raise bad("redis.sentinels is set but redis.mode is not sentinel")
        if self.cluster_nodes and self.mode != "cluster":
            raise bad("redis.cluster_nodes is set but redis.mode is not cluster")
        for field in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            path = getattr(self, field)
            if path is None:
                continue
            if not self.tls_enabled:
                raise bad(f"redis.{field} is set but TLS is off (rediss:// or redis.tls=true)")
            if not path.is_file():
                raise bad(f"redis.{field}: no such file {str(path)!r}")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise bad("redis.tls_cert_file and redis.tls_key_file go together (mTLS)")
        if self.tls_key_password is not None and self.tls_key_file is None:
            raise bad("redis.tls_key_password is set without redis.tls_key_file")
        return self


class ServeSettings(_Frozen):
    """The sidecar HTTP endpoint."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(
        default=1, ge=1, description="sidecar processes sharing the ports, one batcher each"
    )
    grpc_port: int = Field(
        default=8081, ge=0, le=65535, description="the Open Inference Protocol over gRPC; 0 = off"
    )
    max_queue: int = Field(default=1024, ge=1)
    request_timeout_ms: float = Field(default=1000.0, gt=0)
    max_body_bytes: int = Field(default=65536, ge=256)
    cache_enabled: bool = False
    cache_ttl_s: int = Field(default=300, ge=1)
    repository_token: SecretStr | None = Field(
        default=None,
        description="bearer token guarding /v2/repository (index, load, unload); None = off",
    )


class FeatureSettings(_Frozen):
    """Feature state and the Feast repository."""

    repo_dir: Path = Field(
        # Absolute: the worker, the sidecar and the benches read it from any working directory.
        default=Path(__file__).resolve().parents[1] / "examples" / "fraud" / "feature_repo",
        description="the Feast repository whose definitions the stream computes (events, "
        "stream, daily and on-demand views, the feature service)",
    )
    feast_repo_dir: Path = Field(
        default=Path("features"),
        description="the Feast repository the stream's rows are served from (push sources, "
        "materialized terminal rows; `stream-infer features apply`)",
    )
    state_dir: Path = Path("var/state")
    terminal_wait_ms: float = Field(
        default=0.0, ge=0, description="how long a batch may wait for its terminal rows"
    )
    feast_online: bool = Field(
        default=False, description="also write the stream's customer rows to Feast online"
    )
    feast_push_interval_s: float = Field(default=1.0, gt=0)
    customer_cache_size: int = Field(
        default=200_000, ge=1024, description="customers kept in memory (LRU; a miss reloads)"
    )
    terminal_cache_size: int = Field(default=200_000, ge=1024, description="terminal rows (LRU)")
    prune_margin_days: int = Field(
        default=1, ge=0, description="history kept past the 30-day window, for late events"
    )
    schema_registry_url: str | None = Field(
        default=None,
        description="Confluent schema registry: Avro events then carry its wire format "
        "(magic byte 0, 4-byte schema id), the writer's schema fetched by id",
    )
    schema_registry_user: str | None = Field(default=None, description="basic-auth user")
    schema_registry_secret: SecretStr | None = Field(default=None, description="basic-auth secret")
    drop_delay_s: float = Field(
        default=10.0,
        ge=0,
        description="wall-clock seconds the store keeps an entry after it went out of every "
        "window's reach (well past the 1 s auto-commit: a re-delivered batch must find it)",
    )


class EventSettings(_Frozen):
    """What every entry point (worker, sidecar, label processor) accepts as an event's time."""

    max_future_s: float = Field(
        default=3600.0,
        gt=0,
        description="events dated more than this ahead of the wall clock are refused "
        "(dead-lettered; HTTP 400 in the sidecar): a clock-skewed source must not move "
        "pruning or the label watermark (docs/ARCHITECTURE.md, 'Events from the future')",
    )


class LabelSettings(_Frozen):
    """The label processor (faust). Its throughput is bound by faust's per-event cost, not by
    these (DESIGN.md); run more processes in one group to go faster."""

    batch_size: int = Field(
        default=2000, ge=1, description="take_events batch: bounds a batch's memory and latency"
    )
    within_s: float = Field(default=0.2, gt=0, description="take_events wait for a batch")
    transport: Literal["kafka", "confluent"] = Field(
        default="kafka",
        description="faust's broker driver; its confluent:// driver gets no assignment in "
        "faust-streaming 0.15 (bench/labels.py shows it), so keep kafka://",
    )
    lean_handoff: bool = Field(
        default=True,
        description="kafka:// only: hand fetched messages to the agent without faust's two "
        "asyncio tasks per message (stream_infer.labels.transport): 1.5x the labels/s measured",
    )
    uvloop: bool = Field(default=True, description="run faust's event loop on uvloop if installed")
    internal_replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="replication factor of the topics faust creates for itself (its assignor "
        "topic); None = topics.replication_factor",
    )
    max_watermark_step_days: int = Field(
        default=30,
        ge=1,
        description="the most days one publish moves the label watermark past the last one "
        "published (a catch-up of more takes more batches); no record, however dated, moves "
        "it further at once",
    )
    ack_barrier: Path | None = Field(
        default=None,
        description="tests only: after a batch's dead letters are delivered and before it is "
        "acknowledged, create this file and wait until it is removed",
    )
    metrics_port: int = Field(
        default=9109,
        ge=0,
        le=65535,
        description="the label processor's /metrics port (host and on/off: metrics.host and "
        "metrics.enabled; the worker's is metrics.port)",
    )


class RolloutSettings(_Frozen):
    """Canary judgement: windows of challenger scores checked for drift (PSI) and errors;
    enough consecutive breaching windows roll the challenger back (stream_infer.model.rollout)."""

    enabled: bool = True
    psi_max: float = Field(
        default=0.25, gt=0, description="PSI above this breaches (> 0.25 = significant shift)"
    )
    error_rate_max: float = Field(
        default=0.01, ge=0, le=1, description="inference errors / calls above this breaches"
    )
    consecutive_windows: int = Field(
        default=3,
        ge=1,
        description="breaching windows in a row that roll back (a healthy window resets the count)",
    )
    window_scores: int = Field(default=2000, ge=1, description="a window closes at this many")
    window_seconds: float = Field(default=30.0, gt=0, description="... or after this long")
    min_window_scores: int = Field(
        default=200, ge=1, description="a window with fewer events is reported, not judged"
    )


class LagSettings(_Frozen):
    """Consumer-group lag: ``stream-infer lag`` and its exporter (stream_infer.lag)."""

    end_offsets: Literal["fetch", "listoffsets"] = Field(
        default="fetch",
        description="how log-end offsets are read: fetch = the high watermark of a fetch "
        "response (right on every broker, Tansu included); listoffsets = ListOffsets (cheaper; "
        "Tansu answers it wrongly)",
    )
    cluster_name: str = Field(default="stream-infer", description="the cluster_name label")
    window: int = Field(default=10, ge=2, description="commits per partition the status reads")
    interval_s: float = Field(default=5.0, gt=0, description="exporter: seconds between samples")
    samples: int = Field(default=3, ge=1, description="one-shot CLI: samples taken")
    sample_interval_s: float = Field(default=1.0, gt=0, description="one-shot CLI: their gap")
    timeout_s: float = Field(default=10.0, gt=0, description="one sample's broker calls")


class Settings(BaseSettings):
    """Root of the tree. Build it once with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="STREAM_INFER_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    batch: BatchSettings = BatchSettings()
    worker: WorkerSettings = WorkerSettings()
    model: ModelSettings = ModelSettings()
    metrics: MetricsSettings = MetricsSettings()
    redis: RedisSettings = RedisSettings()
    serve: ServeSettings = ServeSettings()
    features: FeatureSettings = FeatureSettings()
    labels: LabelSettings = LabelSettings()
    events: EventSettings = EventSettings()
    rollout: RolloutSettings = RolloutSettings()
    lag: LagSettings = LagSettings()
    kafka_bootstrap: str | None = Field(
        default=None,
        validation_alias="KAFKA_BOOTSTRAP",
        description="an existing cluster to use instead of the embedded broker",
    )

    def with_bootstrap(self, bootstrap: str, *, single_node: bool = False) -> Settings:
        """A copy pointing every Kafka client at ``bootstrap``; ``single_node`` (an embedded
        or test broker) also makes every topic it creates one replica with min.insync 1."""
        kafka = self.kafka.model_copy(update={"bootstrap_servers": bootstrap})
        update: dict[str, Any] = {"kafka": kafka}
        if single_node:
            replicas = {"replication_factor": 1, "min_insync_replicas": 1}
            update["topics"] = self.topics.model_copy(update=replicas)
        return self.model_copy(update=update)

    def resolved_bootstrap(self) -> str | None:
        """``KAFKA_BOOTSTRAP`` wins over ``kafka.bootstrap_servers``; None = embedded broker."""
        return self.kafka_bootstrap or self.kafka.bootstrap_servers


def load_settings(**overrides: Any) -> Settings:
    """Read the environment once; ``overrides`` are nested dicts, as from the CLI.

    Raises:
        ConfigError: a setting is invalid; the message names each one by its environment
            variable (``STREAM_INFER_KAFKA__SASL_MECHANISM``) and says what is wrong.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(settings_error_message(exc)) from None


def settings_error_message(exc: ValidationError) -> str:
    """One line per invalid setting, named as its environment variable."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        path = [str(part).upper() for part in err["loc"]]
        if path == ["KAFKA_BOOTSTRAP"]:
            name = "KAFKA_BOOTSTRAP"
        else:
            name = "STREAM_INFER_" + "__".join(path) if path else "settings"
        lines.append(f"{name}: {err['msg']}")
    return "invalid settings: " + "; ".join(lines)
