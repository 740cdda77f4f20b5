"""Zero skew, proven: every feature vector the running stream emits equals the training set
(stream_infer.streamdef.training, from the same Feast repository) for the same transaction,
with the label processor publishing terminal rows, and Feast's online store serving the
stream's values. Also after a SIGKILL mid-replay."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from pydantic import SecretStr

from loadgen.replay import ReplayOptions, replay
from loadgen.simulator import SimulationConfig, generate
from loadgen.stream import Dataset
from stream_infer.config import Settings
from stream_infer.features.definitions import CUSTOMER_FEATURES, FEATURE_NAMES
from stream_infer.streamdef.feast_reader import load_definitions
from stream_infer.streamdef.training import training_frame

from .conftest import REPO, make_test_settings
from .kafka_io import read_topic, setup_topics
from .processes import WorkerProcess

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    # 30 days of warm-up history, then 6 scored days beyond the windows' reach.
    return generate(
        SimulationConfig(n_customers=120, n_terminals=240, nb_days=36, seed=11), progress=False
    )


def _settings(base: Settings, bootstrap: str, tmp: Path, registry: Path, **kw: object) -> Settings:
    repo = tmp / "feast-repo"
    shutil.copytree(REPO / "features", repo, ignore=shutil.ignore_patterns("data", "*.db"))
    declared = REPO / "examples" / "fraud" / "feature_repo"
    return make_test_settings(
        base,
        bootstrap,
        tmp,
        model={"registry_dir": str(registry)},
        worker={"emit_features": True},
        features={
            "repo_dir": str(declared),
            "feast_repo_dir": str(repo),
            "terminal_wait_ms": 30_000,
            **kw,
        },
    )


def training_set(settings: Settings, data: pd.DataFrame) -> pd.DataFrame:
    """The training set of ``data`` (its labels all known), from the worker's repository."""
    defs = load_definitions(settings.features.repo_dir)
    labels = data[["transaction_id", "tx_datetime", "terminal_id", "tx_fraud"]]
    return training_frame(defs, data, labels)


def compare(emitted: dict[str, dict[str, float]], offline: pd.DataFrame) -> list[str]:
    """Every mismatch, as 'transaction feature: stream vs offline'."""
    problems: list[str] = []
    want = offline.set_index(offline["transaction_id"].astype(str))
    missing = sorted(set(want.index) - set(emitted))
    if missing:
        problems.append(f"{len(missing)} transactions never scored, e.g. {missing[:5]}")
    for tid, feats in emitted.items():
        row = want.loc[tid]
        for name in FEATURE_NAMES:
            if not abs(feats[name] - float(row[name])) <= TOLERANCE:
                problems.append(f"{tid} {name}: stream {feats[name]!r} vs offline {row[name]!r}")
    return problems


def _emitted(messages: list) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for m in messages:
        score = orjson.loads(m.value())
        out[score["transaction_id"]] = score["features"]
    return out


def _run_replay(settings: Settings, data: pd.DataFrame, rate: float | None = None) -> None:
    result = replay(
        Dataset.from_frame(data),
        ReplayOptions(settings.topics.transactions, settings.topics.labels, rate=rate),
        settings.kafka.client_config(),
        progress=False,
    )
    assert result.delivery_errors == 0


def test_stream_features_equal_offline_and_feast_serves_them(
    dataset: pd.DataFrame,
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    model_registry: Path,
) -> None:
    from stream_infer.features.feast_repo import apply

    settings = _settings(
        base_settings, kafka_bootstrap, tmp_path, model_registry, feast_online=True
    )
    setup_topics(settings)
    apply(settings.features.feast_repo_dir)
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
    offline = training_set(settings, dataset)
    problems = compare(emitted, offline)
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:40])
    assert len(emitted) == len(dataset)

    # Feast's online store holds what the stream computed for each customer's last event.
    from stream_infer.features.feast_repo import feature_store

    store = feature_store(settings.features.feast_repo_dir)
    last = dataset.sort_values(["tx_datetime", "transaction_id"]).groupby("customer_id").tail(1)
    customers = [str(c) for c in last["customer_id"]]
    got = store.get_online_features(
        features=[f"customer_spending:{name}" for name in CUSTOMER_FEATURES],
        entity_rows=[{"customer_id": c} for c in customers],
    ).to_dict()
    for i, tid in enumerate(last["transaction_id"].astype(str)):
        for name in CUSTOMER_FEATURES:
            assert got[name][i] == pytest.approx(emitted[tid][name], abs=TOLERANCE), (tid, name)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_parity_survives_sigkill_mid_replay(
    backend: str,
    dataset: pd.DataFrame,
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    model_registry: Path,
    request: pytest.FixtureRequest,
) -> None:
    settings = _settings(base_settings, kafka_bootstrap, tmp_path, model_registry)
    if backend == "redis":
        redis = {
            "url": SecretStr(request.getfixturevalue("redis_url")),
            "key_prefix": request.getfixturevalue("redis_prefix"),
        }
        settings = settings.model_copy(update={"redis": settings.redis.model_copy(update=redis)})
    setup_topics(settings)
    labels = WorkerProcess(settings, tmp_path / "labels.log", command="labels")
    first = WorkerProcess(settings, tmp_path / "w1.log")
    sender = threading.Thread(target=_run_replay, args=(settings, dataset), daemon=True)
    try:
        first.wait_for("assigned [")
        sender.start()
        read_topic(settings, settings.topics.scores, lambda r: len(r) >= len(dataset) // 3)
        first.proc.kill()  # SIGKILL: no drain, no commit
        first.proc.wait(30)
        sender.join(120)
        second = WorkerProcess(settings, tmp_path / "w2.log")
        try:
            scores = read_topic(
                settings,
                settings.topics.scores,
                lambda r: (
                    len({orjson.loads(m.value())["transaction_id"] for m in r}) >= len(dataset)
                ),
                timeout_s=240,
            )
        finally:
            second.terminate(timeout_s=120)
    finally:
        first.kill()
        labels.terminate()
    # Re-delivered events are scored again; each copy must carry the same features.
    copies: dict[str, list[dict[str, float]]] = {}
    for m in scores:
        s = orjson.loads(m.value())
        copies.setdefault(s["transaction_id"], []).append(s["features"])
    for tid, versions in copies.items():
        first_seen = np.array([versions[0][n] for n in FEATURE_NAMES])
        for v in versions[1:]:
            assert np.allclose(first_seen, [v[n] for n in FEATURE_NAMES], atol=TOLERANCE), tid
    problems = compare({t: v[0] for t, v in copies.items()}, training_set(settings, dataset))
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:40])
