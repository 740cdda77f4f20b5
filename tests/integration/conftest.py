"""Real-broker fixtures: one broker per session, fresh topics and group per test.

``KAFKA_BOOTSTRAP`` set: use that cluster. Otherwise start Tansu, and on demand one Apache
Kafka node for the session (``apache_kafka``: what only a real Kafka shows; marker ``apache``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_infer.config import Settings, load_settings
from stream_infer.kafka.apache import ApacheKafka
from stream_infer.kafka.broker import EmbeddedBroker

from .redis_secure import Pki, RedisClusterServers, make_pki, tls_acl_redis
from .redis_server import RedisServer, redis_server_binary

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.integration)
        if {"apache_kafka", "apache_node"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.apache)


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    # Every broker the tests use has one node: one replica, min.insync 1.
    topics = {"specs_dir": REPO / "topics", "replication_factor": 1, "min_insync_replicas": 1}
    return load_settings(topics=topics)


@pytest.fixture(scope="session")
def kafka_bootstrap(base_settings: Settings) -> Iterator[str]:
    if base_settings.kafka_bootstrap:
        yield base_settings.kafka_bootstrap
        return
    with EmbeddedBroker("tansu") as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def _apache_session(base_settings: Settings) -> Iterator[ApacheKafka | None]:
    if base_settings.kafka_bootstrap:
        yield None
        return
    with ApacheKafka() as node:
        yield node


@pytest.fixture(scope="session")
def apache_kafka(base_settings: Settings, _apache_session: ApacheKafka | None) -> str:
    """An Apache Kafka bootstrap: ``KAFKA_BOOTSTRAP``'s cluster, else one KRaft node started
    once for the session (tests share it through unique topics and groups)."""
    if _apache_session is None:
        assert base_settings.kafka_bootstrap is not None
        return base_settings.kafka_bootstrap
    return _apache_session.bootstrap


@pytest.fixture
def apache_node(_apache_session: ApacheKafka | None) -> ApacheKafka:
    """The session's Apache Kafka node itself, for tests that restart it."""
    if _apache_session is None:
        pytest.skip("KAFKA_BOOTSTRAP names a cluster this test cannot restart")
    return _apache_session


def make_test_settings(
    base: Settings, bootstrap: str, tmp: Path, partitions: int | None = 3, **overrides: object
) -> Settings:
    """Per-test topic names and group id, so tests never see each other's data."""
    suffix = uuid.uuid4().hex[:8]
    topics = {
        "transactions": f"transactions-{suffix}",
        "labels": f"transaction-labels-{suffix}",
        "scores": f"scores-{suffix}",
        "scores_shadow": f"scores-shadow-{suffix}",
        "dead_letter": f"transactions-dlq-{suffix}",
        "model_control": f"model-control-{suffix}",
        "specs_dir": str(base.topics.specs_dir),
        "partitions": partitions,
        "replication_factor": base.topics.replication_factor,
        "min_insync_replicas": base.topics.min_insync_replicas,
    }
    data: dict[str, object] = {
        "kafka": {"bootstrap_servers": bootstrap},
        "topics": topics,
        "worker": {"group_id": f"g-{suffix}"},
        "metrics": {"enabled": False},
        "features": {"state_dir": str(tmp / "state")},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            merged = dict(data[key])  # type: ignore[call-overload]
            merged.update(value)
            data[key] = merged
        else:
            data[key] = value
    return load_settings(**data)


@pytest.fixture(scope="session")
def model_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding a small real model (a logistic regression on synthetic feature rows)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from stream_infer.features.definitions import FEATURE_NAMES
    from stream_infer.model.export import to_onnx
    from stream_infer.model.registry import ModelRegistry

    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, len(FEATURE_NAMES))).astype(np.float32)
    y = (x[:, 0] + x[:, 3] > 1.0).astype(int)
    clf = LogisticRegression(max_iter=1000).fit(x, y)
    root = tmp_path_factory.mktemp("registry")
    ModelRegistry(root).register("fraud", to_onnx(clf, len(FEATURE_NAMES)), FEATURE_NAMES)
    return root


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis (CI starts it); tests namespace their keys with a unique prefix."""
    import redis

    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:  # pragma: no cover - CI guarantees Redis
        pytest.fail(f"Redis is not running at {url}: {exc}")
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    import redis

    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private redis-server this test may pause (the shared one on 6379 never is)."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (CI installs it); outage tests need their own")
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A 3-master Redis Cluster on free ports, for the whole session."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (CI installs it)")
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with server and client certificates, made for this session."""
    return make_pki(tmp_path_factory.mktemp("redis-pki"))


@pytest.fixture(scope="session")
def secure_redis(redis_pki: Pki) -> Iterator[RedisServer]:
    """A TLS-only Redis with ACL users (redis_secure.acl_args), for the whole session."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (CI installs it)")
    with tls_acl_redis(redis_pki) as server:
        yield server
