"""Redis as production runs it: a 3-master Redis Cluster, and a TLS-only Redis with ACL users.

On each, the running worker and label processor keep parity with the offline computation, and
the label processor's counts are exact on the cluster. Wrong credentials, an unknown user, an
untrusted certificate or a missing permission stop a process at start (non-zero, within 10 s,
naming the cause) instead of being retried as an outage; so does an access error while running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
from pydantic import SecretStr

from loadgen.simulator import SimulationConfig, generate
from stream_infer.config import RedisSettings, Settings, load_settings
from stream_infer.errors import StoreUnavailableError
from stream_infer.features.definitions import CUSTOMER_FEATURES, SECONDS_PER_DAY
from stream_infer.labels.app import open_partials
from stream_infer.labels.partials import aggregates, merge
from stream_infer.labels.stores import RedisLabelPartials
from stream_infer.state.entity_rows import StoredEntry
from stream_infer.state.factory import open_state
from stream_infer.state.redis_client import RedisAccessError, open_redis
from stream_infer.state.redis_entities import RedisEntityStore
from tests.unit.label_fixtures import DEFS as FRAUD
from tests.unit.label_fixtures import VIEW

from .conftest import make_test_settings
from .fraud_events import write_set
from .kafka_io import make_transactions, produce, read_topic, setup_topics
from .processes import WorkerProcess
from .redis_secure import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    APP_USER,
    READER_PASSWORD,
    READER_USER,
    Pki,
    RedisClusterServers,
    cluster_settings,
    make_ca,
    secure_settings,
    sentinel_for,
    tls_acl_redis,
)
from .redis_server import RedisServer
from .test_labels import START, expected_rows, make_labels
from .test_parity import TOLERANCE, _emitted, _run_replay, compare, training_set
from .test_parity import _settings as parity_settings

#: How long a process may take to refuse bad credentials (the issue's bound).
REFUSE_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    # test_parity's: 30 days of warm-up history, then 6 scored days.
    return generate(
        SimulationConfig(n_customers=120, n_terminals=240, nb_days=36, seed=11), progress=False
    )


def _with_redis(settings: Settings, target: RedisSettings) -> Settings:
    return settings.model_copy(update={"redis": target})


def _topology(request: pytest.FixtureRequest, kind: str, prefix: str) -> RedisSettings:
    if kind == "cluster":
        return cluster_settings(request.getfixturevalue("redis_cluster"), prefix)
    server, pki = request.getfixturevalue("secure_redis"), request.getfixturevalue("redis_pki")
    return secure_settings(server, pki, prefix)


@pytest.mark.parametrize("kind", ["cluster", "tls-acl"])
def test_parity_holds_on_production_redis(
    kind: str,
    dataset: pd.DataFrame,
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    model_registry: Path,
    redis_prefix: str,
    request: pytest.FixtureRequest,
) -> None:
    from stream_infer.features.feast_repo import apply, feature_store

    target = _topology(request, kind, redis_prefix)
    settings = parity_settings(
        base_settings, kafka_bootstrap, tmp_path, model_registry, feast_online=True
    )
    settings = _with_redis(settings, target)
    setup_topics(settings)
    apply(settings.features.feast_repo_dir, target)  # Feast's online store: this same Redis
    labels = WorkerProcess(settings, tmp_path / "labels.log", command="labels")
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        _run_replay(settings, dataset)
        scores = read_topic(
            settings, settings.topics.scores, lambda r: len(r) >= len(dataset), timeout_s=240
        )
    finally:
        assert worker.terminate(timeout_s=240) == 0, worker.output()[-3000:]
        labels.terminate()
    emitted = _emitted(scores)
    problems = compare(emitted, training_set(settings, dataset))
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:40])
    assert len(emitted) == len(dataset)
    # The stream's state is where it should be: in this Redis, under this prefix.
    client = open_redis(target)
    some = str(dataset["customer_id"].iloc[0])
    assert RedisEntityStore(client, redis_prefix).load([some])[some]
    client.close()
    # Feast, configured from the same settings, serves the stream's values from this Redis.
    store = feature_store(settings.features.feast_repo_dir, target)
    last = dataset.sort_values(["tx_datetime", "transaction_id"]).groupby("customer_id").tail(1)
    got = store.get_online_features(
        features=[f"customer_spending:{name}" for name in CUSTOMER_FEATURES],
        entity_rows=[{"customer_id": str(c)} for c in last["customer_id"]],
    ).to_dict()
    for i, tid in enumerate(last["transaction_id"].astype(str)):
        for name in CUSTOMER_FEATURES:
            assert got[name][i] == pytest.approx(emitted[tid][name], abs=TOLERANCE), (tid, name)


def test_label_processor_counts_on_the_cluster(
    redis_cluster: RedisClusterServers,
    redis_prefix: str,
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    settings = make_test_settings(base_settings, kafka_bootstrap, tmp_path)
    settings = _with_redis(settings, cluster_settings(redis_cluster, redis_prefix))
    setup_topics(settings)
    labels = make_labels(days=12)
    produce(settings, settings.topics.labels, labels, key_field="terminal_id")
    proc = WorkerProcess(settings, tmp_path / "labels.log", command="labels")
    stores = open_state(settings)
    last_day = (int(START.timestamp()) // SECONDS_PER_DAY) + 11
    try:
        _poll(lambda: (stores.terminals.complete_through() or -1) >= last_day - 1, proc)
        counts = open_partials(settings)
        _poll(lambda: sum(o + 1 for o in counts.applied_offsets().values()) >= len(labels), proc)
    finally:
        assert proc.terminate() == 0, proc.output()[-3000:]
    want: dict[int, dict[str, tuple[int, int]]] = {}
    for lab in labels:
        day = int(pd.Timestamp(lab["tx_datetime"]).timestamp()) // SECONDS_PER_DAY
        n, f = want.setdefault(day, {}).get(lab["terminal_id"], (0, 0))
        want[day][lab["terminal_id"]] = (n + 1, f + lab["tx_fraud"])
    assert isinstance(counts, RedisLabelPartials)
    (view,) = FRAUD.daily_views
    stored: dict[int, dict[str, tuple[int, int]]] = {}
    for day, per in counts.day_partials(want).items():
        for (_view, terminal), parts in per.items():
            agg = aggregates(view, merge(parts[p] for p in sorted(parts)))["tx_fraud"]
            stored.setdefault(day, {})[terminal] = (agg.count, int(agg.sum))
    assert stored == want
    rows = expected_rows(labels)
    got = stores.terminals.rows(VIEW, rows.keys())
    assert set(got) == set(rows)
    for key, row in rows.items():
        assert got[key] == pytest.approx(row, abs=1e-12), key


def _poll(done: Callable[[], bool], proc: WorkerProcess, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if proc.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"not done: {proc.output()[-3000:]}")
        time.sleep(0.1)


def _bad(case: str, server: RedisServer, pki: Pki, prefix: str, tmp: Path) -> RedisSettings:
    cases: dict[str, dict[str, Any]] = {
        "wrong-password": {"password": SecretStr("not-the-password")},
        "unknown-user": {"username": "nobody"},
        "untrusted-certificate": {"tls_ca_file": make_ca(tmp / "other-ca", "other-ca")[0]},
        "missing-permission": {"username": READER_USER, "password": SecretStr(READER_PASSWORD)},
    }
    return secure_settings(server, pki, prefix, **cases[case])


CAUSES = {
    "wrong-password": "invalid username-password pair",
    "unknown-user": "invalid username-password pair",
    "untrusted-certificate": "certificate verify failed",
    "missing-permission": "no permissions to run",
}


@pytest.mark.parametrize(
    ("command", "case"),
    [
        ("worker", "wrong-password"),
        ("worker", "unknown-user"),
        ("worker", "untrusted-certificate"),
        ("worker", "missing-permission"),
        ("labels", "wrong-password"),
        ("labels", "untrusted-certificate"),
        ("serve", "wrong-password"),
        ("serve", "untrusted-certificate"),
    ],
)
def test_bad_credentials_stop_the_process_naming_the_cause(
    command: str,
    case: str,
    secure_redis: RedisServer,
    redis_pki: Pki,
    redis_prefix: str,
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    model_registry: Path,
) -> None:
    settings = make_test_settings(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        model={"registry_dir": str(model_registry)},
        serve={"port": 0, "grpc_port": 0},
    )
    settings = _with_redis(settings, _bad(case, secure_redis, redis_pki, redis_prefix, tmp_path))
    setup_topics(settings)
    proc = WorkerProcess(settings, tmp_path / f"{command}.log", command=command)
    try:
        code = proc.proc.wait(REFUSE_WITHIN_S)
    finally:
        proc.kill()
    out = proc.output()
    assert code != 0, out[-3000:]
    assert CAUSES[case] in out, out[-3000:]
    assert "redis." in out, out[-3000:]  # names the settings to check
    assert "Traceback" not in out, out[-3000:]  # one clear line, not a stack


def test_an_access_error_while_running_is_fatal_not_an_outage(
    redis_pki: Pki, redis_prefix: str
) -> None:
    with tls_acl_redis(redis_pki) as server:
        settings = secure_settings(server, redis_pki, redis_prefix)
        client = open_redis(settings)
        store = RedisEntityStore(client, redis_prefix)
        store.load(["c1"])
        admin = secure_settings(
            server, redis_pki, redis_prefix, username=ADMIN_USER, password=SecretStr(ADMIN_PASSWORD)
        )
        open_redis(admin).execute_command("ACL", "SETUSER", APP_USER, "resetpass", ">rotated")
        client.connection_pool.disconnect()  # the next call authenticates anew, and fails
        with pytest.raises(RedisAccessError, match="invalid username-password pair"):
            store.load(["c1"])


def test_stores_reach_the_master_through_a_sentinel(redis_prefix: str) -> None:
    with RedisServer() as master, sentinel_for(master, "orders") as port:
        settings = RedisSettings(
            mode="sentinel", sentinels=(f"127.0.0.1:{port}",), sentinel_master="orders",
            key_prefix=redis_prefix,
        )  # fmt: skip
        stores = open_state(load_settings(redis=settings.model_dump()))
        stores.entities.save(write_set([("c1", "t1", 1_700_000_000, 1, [2.5])]))
        assert stores.entities.load(["c1"]) == {"c1": [StoredEntry("t1", 1_700_000_000, 1, [2.5])]}
        stores.terminals.publish({VIEW: {("T1", 20000): (1.0, 0.0, 1.0, 0.0, 1.0, 0.0)}}, 19999)
        # Written to the master the sentinel named, not somewhere else.
        direct = redis.Redis(port=master.port)
        assert direct.hgetall(f"{redis_prefix}:e:c1") == {b"t1": b'["t1",1700000000,1,[2.5]]'}
        assert direct.get(f"{redis_prefix}:d:complete") == b"19999"
        direct.close()


def test_a_cluster_without_a_reachable_seed_is_an_outage_at_open() -> None:
    settings = RedisSettings(
        url=SecretStr("redis://127.0.0.1:1"), mode="cluster", connect_timeout_s=0.5
    )
    with pytest.raises(StoreUnavailableError, match="cluster discovery"):
        open_redis(settings)


@pytest.mark.parametrize("command", ["worker", "labels"])
def test_a_password_rotated_under_a_running_process_stops_it(
    command: str,
    redis_pki: Pki,
    redis_prefix: str,
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    model_registry: Path,
) -> None:
    with tls_acl_redis(redis_pki) as server:
        settings = make_test_settings(
            base_settings, kafka_bootstrap, tmp_path, model={"registry_dir": str(model_registry)}
        )
        settings = _with_redis(settings, secure_settings(server, redis_pki, redis_prefix))
        setup_topics(settings)
        proc = WorkerProcess(settings, tmp_path / f"{command}.log", command=command)
        try:
            if command == "worker":
                topic, events, key = settings.topics.transactions, make_transactions(20), None
            else:
                topic, events, key = settings.topics.labels, make_labels(days=2), "terminal_id"
            produce(settings, topic, events[:10], **({"key_field": key} if key else {}))
            if command == "worker":
                read_topic(settings, settings.topics.scores, lambda r: len(r) >= 10)
            else:
                counts = open_partials(settings)
                _poll(lambda: sum(o + 1 for o in counts.applied_offsets().values()) >= 10, proc)
            admin = open_redis(
                secure_settings(
                    server,
                    redis_pki,
                    redis_prefix,
                    username=ADMIN_USER,
                    password=SecretStr(ADMIN_PASSWORD),
                )
            )
            admin.execute_command("ACL", "SETUSER", APP_USER, "resetpass", ">rotated")
            admin.execute_command("CLIENT", "KILL", "USER", APP_USER)  # the next call logs in
            produce(settings, topic, events[10:], **({"key_field": key} if key else {}))
            code = proc.proc.wait(120)
        finally:
            proc.kill()
        out = proc.output()
        assert code != 0, out[-3000:]
        assert "invalid username-password pair" in out, out[-3000:]
