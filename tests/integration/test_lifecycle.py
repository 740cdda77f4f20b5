"""The model lifecycle on the real broker, under a steady stream: promote and roll back without
a restart, a refused load keeps the champion serving, a canary by sticky key, shadow scoring
that never changes what is served, and the automatic rollback of a drifting challenger."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import orjson
import pytest

from stream_infer.config import Settings
from stream_infer.features.compiled import FeatureComputer
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.export import to_onnx
from stream_infer.model.registry import open_registry
from stream_infer.model.routing import routes_to_challenger
from stream_infer.process import child_env
from stream_infer.wire import epoch_seconds

from .conftest import make_test_settings
from .fraud_events import columns, fraud_defs
from .kafka_io import make_transactions, produce, read_topic, setup_topics
from .processes import WorkerProcess

EVENTS = make_transactions(8_000, customers=2_000)


def _matrix(events: list[dict]) -> np.ndarray:
    """The stream's own features for these events (no terminal rows: zeros)."""
    from datetime import datetime

    rows = [
        (
            e["transaction_id"],
            e["customer_id"],
            epoch_seconds(datetime.fromisoformat(e["tx_datetime"])),
            e["tx_amount"],
            i,
        )
        for i, e in enumerate(events)
    ]
    matrix, _flags = FeatureComputer(fraud_defs()).compute(columns(rows))
    return matrix


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[bytes, list[float]]]:
    """Three real models on the stream's features, with reference deciles: v1, v2 (another
    threshold) and a drifter trained on amounts three times larger (its reference too)."""
    from sklearn.linear_model import LogisticRegression

    x = _matrix(EVENTS).astype(np.float32)
    amount = x[:, 0]
    out = {}
    for key, rows, cut in (
        ("v1", x, np.median(amount)),
        ("v2", x, np.quantile(amount, 0.7)),
        ("drift", x * np.float32(3.0), np.median(amount) * 3),
    ):
        clf = LogisticRegression(max_iter=2000).fit(rows, (rows[:, 0] > cut).astype(int))
        scores = clf.predict_proba(rows)[:, 1]
        out[key] = (
            to_onnx(clf, len(FEATURE_NAMES)),
            np.quantile(scores, np.linspace(0.1, 0.9, 9)).tolist(),
        )
    return out


def _registry(tmp: Path, models: dict[str, tuple[bytes, list[float]]]) -> Path:
    root = tmp / "registry"
    reg = open_registry(make_settings_model(root))
    for key in ("v1", "v2", "drift"):
        data, deciles = models[key]
        reg.register("fraud", data, FEATURE_NAMES, reference_deciles=deciles)
    return root


def make_settings_model(root: Path) -> object:
    from stream_infer.config import ModelSettings

    return ModelSettings(registry_dir=root)  # the folder backend, as workers will open it


def _settings(base: Settings, bootstrap: str, tmp: Path, registry: Path, **kw: object) -> Settings:
    return make_test_settings(
        base,
        bootstrap,
        tmp,
        model={"registry_dir": str(registry), "poll_interval_s": 0.3},
        **kw,
    )


def _paced(settings: Settings, events: list[dict], per_second: int) -> threading.Thread:
    def run() -> None:
        step = max(1, per_second // 10)
        for i in range(0, len(events), step):
            started = time.monotonic()
            produce(settings, settings.topics.transactions, events[i : i + step])
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class _Sender(threading.Thread):
    """Sends ``events`` in order at ``per_second`` until they run out or :meth:`finish`;
    ``sent`` is what went out (the set the scores are checked against)."""

    def __init__(self, settings: Settings, events: list[dict], per_second: int) -> None:
        super().__init__(daemon=True)
        self.settings, self.events, self.per_second = settings, events, per_second
        self.sent: list[dict] = []
        self._finish = threading.Event()
        self.start()

    def run(self) -> None:
        step = max(1, self.per_second // 10)
        for i in range(0, len(self.events), step):
            if self._finish.is_set():
                return
            started = time.monotonic()
            chunk = self.events[i : i + step]
            produce(self.settings, self.settings.topics.transactions, chunk)
            self.sent += chunk
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))

    def finish(self) -> list[dict]:
        self._finish.set()
        self.join(60)
        return self.sent


LONG_STREAM = make_transactions(60_000, customers=2_000)


def _scores(settings: Settings, n: int, topic: str | None = None) -> list[dict]:
    messages = read_topic(
        settings,
        topic or settings.topics.scores,
        lambda r: len({orjson.loads(m.value())["transaction_id"] for m in r}) >= n,
        timeout_s=180,
    )
    return [orjson.loads(m.value()) | {"_partition": m.partition()} for m in messages]


def _at(score: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(score["scored_at"]).timestamp()


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_infer", "model", *args],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wait_scores(settings: Settings, until: object, timeout_s: float = 60.0) -> list[dict]:
    msgs = read_topic(
        settings,
        settings.topics.scores,
        lambda r: until([orjson.loads(m.value()) for m in r]),  # type: ignore[operator]
        timeout_s=timeout_s,
    )
    return [orjson.loads(m.value()) for m in msgs]


def test_promote_refuse_and_rollback_without_a_restart(
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    models: dict[str, tuple[bytes, list[float]]],
) -> None:
    registry = _registry(tmp_path, models)
    settings = _settings(base_settings, kafka_bootstrap, tmp_path, registry)
    setup_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "w.log")
    try:
        worker.wait_for("assigned [")
        # Runs until the test has seen every switch (CLI start-up is slow on a loaded host).
        sender = _Sender(settings, LONG_STREAM, per_second=500)
        _wait_scores(settings, lambda r: len(r) >= 500)
        promoted = _cli(settings, "promote", "fraud", "2", "--reason", "better AP")
        assert promoted.returncode == 0, promoted.stderr
        promoted_at = time.time()
        _wait_scores(settings, lambda r: any(_at(s) > promoted_at + 3.5 for s in r), timeout_s=120)
        # A version whose artifact was tampered with is refused; v2 keeps serving.
        (registry / "fraud" / "3" / "model.onnx").write_bytes(b"not an onnx model")
        refused = _cli(settings, "promote", "fraud", "3")
        assert refused.returncode != 0 and "sha256" in (refused.stderr + refused.stdout).lower()
        rollback_started = time.time()
        rolled = _cli(settings, "rollback", "fraud", "--reason", "drill")
        assert rolled.returncode == 0, rolled.stderr
        rolled_at = time.time()
        _wait_scores(settings, lambda r: any(_at(s) > rolled_at + 3.5 for s in r), timeout_s=120)
        sent = sender.finish()
        scores = _scores(settings, len(sent))
        assert worker.proc.poll() is None
    finally:
        assert worker.terminate() == 0, worker.output()[-3000:]
    ids = Counter(s["transaction_id"] for s in scores)
    assert set(ids) == {e["transaction_id"] for e in sent} and max(ids.values()) == 1

    between = [s for s in scores if promoted_at + 3 < _at(s) < rollback_started]
    after = [s for s in scores if _at(s) > rolled_at + 3]
    assert between and all(s["model_version"] == 2 for s in between)
    assert after and all(s["model_version"] == 1 for s in after), "rollback did not take"
    assert {s["model_role"] for s in scores} == {"champion"}
    # Per partition the version changes only at batch boundaries: v1.., v2.., v1.. once each.
    by_partition: dict[int, list[int]] = defaultdict(list)
    for s in scores:
        run = by_partition[s["_partition"]]
        if not run or run[-1] != s["model_version"]:
            run.append(s["model_version"])
    assert all(len(r) <= 3 for r in by_partition.values()), by_partition
    history = orjson.loads(_cli(settings, "show", "fraud", "--json").stdout)
    assert "drill" in str(history)


def test_canary_is_sticky_per_customer(
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    models: dict[str, tuple[bytes, list[float]]],
) -> None:
    registry = _registry(tmp_path, models)
    settings = _settings(base_settings, kafka_bootstrap, tmp_path, registry)
    open_registry(settings.model).canary("fraud", 2, 20, reason="A/B")
    setup_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "w.log")
    try:
        produce(settings, settings.topics.transactions, EVENTS)
        scores = _scores(settings, len(EVENTS))
    finally:
        assert worker.terminate() == 0
    versions: dict[str, set[int]] = defaultdict(set)
    for s in scores:
        versions[s["customer_id"]].add(s["model_version"])
        assert s["model_role"] == ("challenger" if s["model_version"] == 2 else "champion")
    assert all(len(v) == 1 for v in versions.values()), "a customer saw two versions"
    on_challenger = [c for c, v in versions.items() if v == {2}]
    share = len(on_challenger) / len(versions)
    assert abs(share - 0.20) <= 0.03, share
    # The sidecar routes with the same function: each customer's side is the same there.
    assert all(routes_to_challenger(c, 20) == (v == {2}) for c, v in versions.items())


def test_shadow_scores_everything_and_changes_nothing_served(
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    models: dict[str, tuple[bytes, list[float]]],
) -> None:
    registry = _registry(tmp_path, models)
    plain = _settings(base_settings, kafka_bootstrap, tmp_path / "plain", registry)
    shadowed = _settings(base_settings, kafka_bootstrap, tmp_path / "shadow", registry)
    # Same input, two groups: one worker without a shadow (pinned v1), one with shadow v2.
    shadowed = shadowed.model_copy(
        update={
            "topics": shadowed.topics.model_copy(update={"transactions": plain.topics.transactions})
        }
    )
    plain = plain.model_copy(update={"model": plain.model.model_copy(update={"version": 1})})
    open_registry(shadowed.model).shadow("fraud", 2, reason="watch it")
    setup_topics(plain)
    setup_topics(shadowed)
    workers = [
        WorkerProcess(plain, tmp_path / "p.log"),
        WorkerProcess(shadowed, tmp_path / "s.log"),
    ]
    try:
        produce(plain, plain.topics.transactions, EVENTS)
        base = _scores(plain, len(EVENTS))
        served = _scores(shadowed, len(EVENTS))
        shadow = _scores(shadowed, len(EVENTS), shadowed.topics.scores_shadow)
    finally:
        assert [w.terminate() for w in workers] == [0, 0]

    def canonical(s: dict) -> bytes:
        return orjson.dumps(
            {k: v for k, v in s.items() if k not in {"scored_at", "latency_ms"}},
            option=orjson.OPT_SORT_KEYS,
        )

    assert {s["transaction_id"]: canonical(s) for s in served} == {
        s["transaction_id"]: canonical(s) for s in base
    }
    assert {s["transaction_id"] for s in shadow} == {e["transaction_id"] for e in EVENTS}
    by_tx = {s["transaction_id"]: s for s in served}
    for s in shadow:
        assert s["model_version"] == 2 and s["model_role"] == "shadow"
        assert s["champion_version"] == 1
        assert s["champion_score"] == by_tx[s["transaction_id"]]["score"]


def test_a_drifting_challenger_is_rolled_back_automatically(
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    models: dict[str, tuple[bytes, list[float]]],
) -> None:
    registry = _registry(tmp_path, models)
    settings = _settings(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        registry,
        rollout={"window_scores": 300, "min_window_scores": 100, "consecutive_windows": 2},
    )
    reg = open_registry(settings.model)
    reg.canary("fraud", 3, 50, reason="try the retrained model")
    setup_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "w.log")
    try:
        worker.wait_for("assigned [")
        sender = _paced(settings, EVENTS, per_second=1000)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and reg.serving("fraud").challenger.percent != 0:  # type: ignore[union-attr]
            time.sleep(0.2)
        rolled_at = time.time()
        sender.join(120)
        scores = _scores(settings, len(EVENTS))
    finally:
        assert worker.terminate() == 0, worker.output()[-3000:]
    assert reg.serving("fraud").challenger.percent == 0  # type: ignore[union-attr]
    last = reg.history("fraud")[-1]
    assert last.reason.startswith("automatic rollback: PSI"), last
    assert last.actor.startswith("rollout-policy@")

    assert any(s["model_version"] == 3 for s in scores)
    assert all(s["model_version"] == 1 for s in scores if _at(s) > rolled_at + 3)


def test_an_announced_promotion_switches_long_before_the_next_poll(
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    models: dict[str, tuple[bytes, list[float]]],
) -> None:
    registry = _registry(tmp_path, models)
    settings = _settings(base_settings, kafka_bootstrap, tmp_path, registry)
    # Polls every 10 minutes: only the model-control announcement can switch it in this test.
    settings = settings.model_copy(
        update={"model": settings.model.model_copy(update={"poll_interval_s": 600.0})}
    )
    setup_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "w.log")
    try:
        worker.wait_for("assigned [")
        sender = _paced(settings, EVENTS, per_second=500)
        _wait_scores(settings, lambda r: len(r) >= 300)
        assert _cli(settings, "promote", "fraud", "2").returncode == 0
        scores = _wait_scores(
            settings, lambda r: any(s["model_version"] == 2 for s in r), timeout_s=30
        )
        sender.join(120)
    finally:
        assert worker.terminate() == 0, worker.output()[-3000:]
    # With the next poll 10 minutes away, only the announcement can have switched it.
    assert any(s["model_version"] == 2 for s in scores)
