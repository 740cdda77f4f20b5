"""Redis settings, the one client builder and its error classification, Feast's online store
config: what each topology builds, and which failures are fatal and which are outages."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr, ValidationError
from redis.sentinel import SentinelConnectionPool

from stream_infer.config import RedisSettings, load_settings
from stream_infer.errors import ConfigError, StoreUnavailableError
from stream_infer.features.feast_redis import online_store
from stream_infer.labels.stores import RedisLabelPartials
from stream_infer.model.registry import ModelRegistry
from stream_infer.state.redis_client import (
    RedisAccessError,
    access_error,
    build_client,
    store_errors,
)
from stream_infer.state.redis_entities import RedisEntityStore

from .fakes import FakeConsumer, FakeProducer
from .test_worker_faults import FlakyStore, make_worker, rec, scored_ids


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("not read until a connection is made")
    return path


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (
            {"url": "rediss://h", "tls_ca_file": "/no/such/ca.pem"},
            "redis.tls_ca_file: no such file",
        ),
        ({"url": "redis://h", "tls_ca_file": "{pem}"}, "redis.tls_ca_file is set but TLS is off"),
        ({"url": "rediss://h", "tls_cert_file": "{pem}"}, "go together"),
        ({"mode": "sentinel"}, "redis.mode=sentinel needs redis.sentinels"),
        ({"mode": "sentinel", "sentinels": ["h"]}, "redis.sentinels: 'h' is not host:port"),
        ({"mode": "cluster"}, "redis.mode=cluster needs redis.url"),
        ({"mode": "cluster", "url": "redis://h/3"}, "database 0 only"),
        ({"url": "http://h"}, "redis.url must start with"),
        ({"url": "redis://h", "sentinels": ["h:1"]}, "redis.mode is not sentinel"),
        ({"url": "redis://h", "key_prefix": "{si}"}, "key_prefix"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(
    fields: dict[str, Any], named: str, pem: Path
) -> None:
    fields = {k: (str(pem) if v == "{pem}" else v) for k, v in fields.items()}
    with pytest.raises(ValidationError, match=named.replace("(", r"\(")):
        RedisSettings(**fields)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, pem: Path) -> None:
    monkeypatch.setenv("STREAM_INFER_REDIS__URL", "rediss://cache:6380/2")
    monkeypatch.setenv("STREAM_INFER_REDIS__USERNAME", "app")
    monkeypatch.setenv("STREAM_INFER_REDIS__PASSWORD", "pw")
    monkeypatch.setenv("STREAM_INFER_REDIS__TLS_CA_FILE", str(pem))
    redis_settings = load_settings().redis
    assert redis_settings.enabled and redis_settings.tls_enabled
    assert redis_settings.password == SecretStr("pw")
    assert "pw" not in repr(redis_settings)


def test_standalone_client_carries_credentials_tls_and_no_retries(pem: Path) -> None:
    s = RedisSettings(
        url=SecretStr("rediss://urluser:urlpw@cache:6380/2"),
        password=SecretStr("field-pw"),
        tls_ca_file=pem,
        socket_timeout_s=0.3,
    )
    client = build_client(s)
    kw = client.connection_pool.connection_kwargs
    assert (kw["host"], kw["port"], kw["db"]) == ("cache", 6380, 2)
    assert kw["username"] == "urluser"  # the URL's, as the field is unset
    assert kw["password"] == "field-pw"  # the field wins over the URL's
    assert kw["ssl_ca_certs"] == str(pem) and kw["ssl_cert_reqs"] == "required"
    assert kw["socket_timeout"] == 0.3
    assert kw["retry"].get_retries() == 0
    assert client.connection_pool.connection_class is redis.SSLConnection


def test_sentinel_client_finds_the_master_through_the_sentinels() -> None:
    s = RedisSettings(
        mode="sentinel",
        sentinels=("s1:26379", "s2:26380"),
        sentinel_master="orders",
        sentinel_password=SecretStr("sentinel-pw"),
        password=SecretStr("master-pw"),
    )
    client = build_client(s)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "orders"
    assert pool.connection_kwargs["password"] == "master-pw"
    sentinels = pool.sentinel_manager.sentinels
    assert [c.connection_pool.connection_kwargs["port"] for c in sentinels] == [26379, 26380]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "sentinel-pw"


def test_redis_not_configured_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        build_client(RedisSettings())


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.AuthenticationError("invalid username-password pair"),
        redis.exceptions.NoPermissionError("this user has no permissions to run the 'hset'"),
        redis.exceptions.ResponseError("NOAUTH Authentication required."),
        redis.exceptions.ResponseError("WRONGPASS invalid username-password pair"),
    ],
)
def test_access_errors_are_fatal(exc: Exception) -> None:
    assert isinstance(access_error(exc), RedisAccessError)


def test_an_untrusted_certificate_is_fatal() -> None:
    wrapped = redis.ConnectionError("Error 1 connecting to h:6380. certificate verify failed")
    wrapped.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    fatal = access_error(wrapped)
    assert fatal is not None and "redis.tls_ca_file" in str(fatal)


@pytest.mark.parametrize(
    "exc",
    [
        redis.ConnectionError("Connection refused"),
        redis.TimeoutError("Timeout reading from socket"),
        redis.exceptions.BusyLoadingError("LOADING"),
        redis.exceptions.ClusterDownError("CLUSTERDOWN"),
    ],
)
def test_outages_are_not_fatal(exc: Exception) -> None:
    assert access_error(exc) is None
    with pytest.raises(StoreUnavailableError), store_errors("read"):
        raise exc


class _RefusingClient:
    """A client whose every call meets a rotated password."""

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise redis.exceptions.AuthenticationError("invalid username-password pair")

        return refuse

    def pipeline(self, transaction: bool = True) -> Any:
        return self

    def register_script(self, script: str) -> Any:
        return self.evalsha  # refuses when called, as the script would


def test_stores_raise_access_errors_not_outages() -> None:
    client = _RefusingClient()
    with pytest.raises(RedisAccessError):
        RedisEntityStore(client).load(["c1"])
    with pytest.raises(RedisAccessError):
        RedisLabelPartials(client).applied_offsets()


def test_feast_gets_the_same_redis(pem: Path, tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("k")
    s = RedisSettings(
        url=SecretStr("rediss://cache:6380/2"),
        username="app",
        password=SecretStr("123"),  # JSON-decoded by Feast: must stay a string
        tls_ca_file=pem,
        tls_cert_file=pem,
        tls_key_file=key,
    )
    cfg = online_store(s)
    assert cfg["redis_type"] == "redis"
    assert cfg["connection_string"] == (
        f'cache:6380,db=2,username=app,password="123",ssl=true,ssl_ca_certs={pem},'
        f"ssl_certfile={pem},ssl_keyfile={key}"
    )
    cluster = online_store(
        RedisSettings(url=SecretStr("redis://n1:7000"), mode="cluster", cluster_nodes=("n2:7001",))
    )
    assert cluster == {
        "type": "redis",
        "redis_type": "redis_cluster",
        "connection_string": "n1:7000,n2:7001",
    }
    sentinel = online_store(
        RedisSettings(
            mode="sentinel",
            sentinels=("s1:26379",),
            sentinel_master="orders",
            sentinel_password=SecretStr("spw"),
        )
    )
    assert sentinel["redis_type"] == "redis_sentinel" and sentinel["sentinel_master"] == "orders"
    assert sentinel["connection_string"] == 's1:26379,sentinel_kwargs={"password": "spw"}'


class _RevokedStore(FlakyStore):
    """Answers until its user's password is rotated, then refuses every load."""

    revoked = False

    def load(self, customer_ids: Iterable[str]) -> dict[str, list[Any]]:
        if self.revoked:
            raise RedisAccessError("redis refused access (WRONGPASS); check redis.password")
        return super().load(customer_ids)


def test_refused_credentials_stop_the_worker_without_dead_letters(
    registry: ModelRegistry,
) -> None:
    store = _RevokedStore()
    consumer = FakeConsumer([[rec(0)], [rec(1), rec(2)]])
    producer = FakeProducer()
    worker = make_worker(registry, consumer, producer, store=store)
    consumer.before_consume = lambda c: setattr(store, "revoked", len(c.batches) == 1)
    with pytest.raises(RedisAccessError, match="WRONGPASS"):
        worker.run(max_events=3)
    assert consumer.stored_offsets() == [(0, 1)]  # batch 0 only
    assert scored_ids(producer) == ["t0-0"]
    assert scored_ids(producer, "transactions-dlq") == []  # not the events' fault
