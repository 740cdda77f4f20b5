"""A transaction from the future cannot corrupt its customer's history (issue 19), on a real
broker with the real worker process.

One customer's transactions over 20 minutes, then one dated 2999-01-01, then more of the same
customer a few seconds later; a pause past the store's drop delay; more; a restart (histories
reloaded from the store); more. The 2999 record is in the dead-letter topic, and every other
event's features equal the offline computation over the valid events.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from stream_infer.config import Settings
from stream_infer.features.definitions import CUSTOMER_FEATURES, REQUEST_FEATURES
from stream_infer.streamdef.training import training_frame

from .conftest import make_test_settings
from .fraud_events import fraud_defs
from .kafka_io import produce, read_topic, setup_topics
from .processes import WorkerProcess

START = datetime(2026, 11, 2, 9, tzinfo=UTC)
CUSTOMER = "c-skewed"
DROP_DELAY_S = 1.0
#: What the 2999 record can corrupt (terminal features need the label processor; other tests
#: hold them to the offline computation).
COMPARED = REQUEST_FEATURES + CUSTOMER_FEATURES


def _tx(i: int, when: datetime | str, customer: str = CUSTOMER) -> dict[str, Any]:
    return {
        "transaction_id": f"tx-{i}",
        "tx_datetime": when if isinstance(when, str) else when.isoformat(),
        "customer_id": customer,
        "terminal_id": f"T{i % 5}",
        "tx_amount": round(10 + (i * 37) % 90 + 0.25, 2),
    }


def _run(first: int, n: int, at: datetime, step_s: float) -> list[dict[str, Any]]:
    return [_tx(first + i, at + timedelta(seconds=step_s * i)) for i in range(n)]


def _scores(settings: Settings, n: int) -> dict[str, dict[str, float]]:
    got = read_topic(
        settings,
        settings.topics.scores,
        lambda r: len({orjson.loads(m.value())["transaction_id"] for m in r}) >= n,
        timeout_s=120,
    )
    return {(s := orjson.loads(m.value()))["transaction_id"]: s["features"] for m in got}


def test_a_future_transaction_is_dead_lettered_and_history_stays_exact(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    settings = make_test_settings(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        model={"registry_dir": str(model_registry)},
        worker={"emit_features": True},
        features={"drop_delay_s": DROP_DELAY_S},
    )
    setup_topics(settings)
    runs = [
        _run(0, 20, START, 60.0),  # 20 minutes of one customer
        _run(21, 5, START + timedelta(minutes=20, seconds=3), 2.0),  # a few seconds later
        _run(26, 5, START + timedelta(minutes=21), 5.0),  # after the drop delay
        _run(31, 5, START + timedelta(minutes=22), 5.0),  # after a restart
    ]
    future = _tx(20, "2999-01-01T00:00:00Z")
    worker = WorkerProcess(settings, tmp_path / "w1.log")
    try:
        produce(settings, settings.topics.transactions, [*runs[0], future, *runs[1]])
        emitted = _scores(settings, 25)
        letters = read_topic(settings, settings.topics.dead_letter, lambda r: len(r) >= 1)
        # The pause: the store would now delete whatever the 2999 record had put out of reach.
        scored_at = time.monotonic()
        while time.monotonic() < scored_at + 3 * DROP_DELAY_S:
            time.sleep(0.1)
        produce(settings, settings.topics.transactions, runs[2])
        emitted = _scores(settings, 30)
    finally:
        assert worker.terminate(timeout_s=120) == 0, worker.output()[-3000:]
    second = WorkerProcess(settings, tmp_path / "w2.log")
    try:
        produce(settings, settings.topics.transactions, runs[3])
        emitted = _scores(settings, 35)
    finally:
        assert second.terminate(timeout_s=120) == 0, second.output()[-3000:]

    (letter,) = [orjson.loads(m.value()) for m in letters]
    assert orjson.loads(base64.b64decode(letter["original"])) == future
    assert letter["source_topic"] == settings.topics.transactions
    # The generated decoder names the field, the kind of refusal and the latest accepted time.
    assert "tx_datetime: event from the future: 2999-01-01T00:00:00Z" in letter["reason"]
    assert "is ahead of the wall clock (latest accepted " in letter["reason"]
    assert "tx-20" not in emitted

    valid = [tx for run in runs for tx in run]
    frame = pd.DataFrame(valid).assign(
        tx_datetime=lambda d: pd.to_datetime(d["tx_datetime"], utc=True).dt.tz_localize(None),
        tx_fraud=0,
    )
    offline = training_frame(fraud_defs(), frame).set_index("transaction_id")
    assert set(emitted) == set(offline.index)
    problems = [
        f"{tid} {name}: stream {feats[name]!r} vs offline {offline.loc[tid, name]!r}"
        for tid, feats in emitted.items()
        for name in COMPARED
        if feats[name] != pytest.approx(float(offline.loc[tid, name]), abs=1e-6)
    ]
    assert not problems, "\n".join(problems[:40])
    # The run right after the 2999 record counts all 20 before it (5 if it had been pruned).
    assert emitted["tx-21"]["customer_nb_tx_1d"] == 21
    assert emitted["tx-35"]["customer_nb_tx_1d"] == 35
