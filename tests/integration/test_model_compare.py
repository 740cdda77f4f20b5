"""`compare` on the real broker: the report equals a direct computation on the same records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stream_infer.config import Settings
from stream_infer.model.compare import compare, render_json
from stream_infer.model.routing import challenger_mask
from stream_infer.training.evaluate import evaluate

from .conftest import make_test_settings
from .kafka_io import produce, setup_topics

START = datetime(2026, 4, 1, tzinfo=UTC)
N, CUSTOMERS, CANARY_PERCENT = 3000, 400, 20.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _synthetic() -> dict[str, Any]:
    """Champion v1 serves most customers, challenger v2 a 20 % canary; shadow v3 re-scores the
    champion's events; labels arrive for 85 % of the events."""
    rng = np.random.default_rng(21)
    customers = [f"c{int(c)}" for c in rng.integers(0, CUSTOMERS, N)]
    times = [(START + timedelta(seconds=86 * i)).isoformat() for i in range(N)]  # 3 days
    fraud = (rng.random(N) < 0.08).astype(int)
    signal = 2.5 * fraud - 1.5
    champ = _sigmoid(signal + rng.normal(0, 1.2, N))
    canary = _sigmoid(signal + rng.normal(0, 0.9, N))
    shadow = _sigmoid(signal + 0.4 + rng.normal(0, 1.0, N))
    on_canary = challenger_mask(customers, CANARY_PERCENT)
    labelled = rng.random(N) < 0.85
    return {
        "customers": customers,
        "times": times,
        "fraud": fraud,
        "champ": champ,
        "canary": canary,
        "shadow": shadow,
        "on_canary": on_canary,
        "labelled": labelled,
    }


def _records(d: dict[str, Any]) -> tuple[list[dict], list[dict], list[dict]]:
    scores, shadows, labels = [], [], []
    for i in range(N):
        tx, cust, when = f"tx-{i}", d["customers"][i], d["times"][i]
        canary = bool(d["on_canary"][i])
        value = float(d["canary"][i] if canary else d["champ"][i])
        rec: dict[str, Any] = {
            "transaction_id": tx,
            "customer_id": cust,
            "score": value,
            "is_fraud": value >= 0.5,
            "model_name": "fraud",
            "model_version": 2 if canary else 1,
            "model_semver": "1.1.0" if canary else "1.0.0",
            "model_role": "challenger" if canary else "champion",
            "event_time": when,
            "scored_at": when,
            "latency_ms": 3.0,
        }
        if i % 250 == 0:
            del rec["model_semver"], rec["latency_ms"]  # optional fields may be missing
        scores.append(rec)
        if not canary:
            shadows.append(
                {
                    "transaction_id": tx,
                    "customer_id": cust,
                    "model_name": "fraud",
                    "model_version": 3,
                    "model_semver": "2.0.0",
                    "model_role": "shadow",
                    "score": float(d["shadow"][i]),
                    "champion_version": 1,
                    "champion_score": value,
                    "event_time": when,
                    "scored_at": when,
                }
            )
        if d["labelled"][i]:
            labels.append(
                {
                    "transaction_id": tx,
                    "tx_datetime": when,
                    "terminal_id": str(i % 53),
                    "tx_fraud": int(d["fraud"][i]),
                }
            )
    scores += [dict(r) for r in scores[:40]]  # redeliveries (at-least-once)
    return scores, shadows, labels


def _psi(actual: np.ndarray, baseline: np.ndarray) -> float:
    """PSI written out: the baseline's deciles, both histograms, empty shares floored."""
    edges = np.quantile(baseline, np.arange(1, 10) / 10)
    p = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=10) / len(actual)
    q = np.bincount(np.searchsorted(edges, baseline, side="right"), minlength=10) / len(baseline)
    p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    return float(np.sum((p - q) * np.log(p / q)))


def _expected_metrics(d: dict[str, Any], rows: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    frame = pd.DataFrame(
        {
            "customer_id": [d["customers"][i] for i in rows],
            "tx_datetime": pd.to_datetime([d["times"][i] for i in rows], utc=True),
            "tx_fraud": d["fraud"][rows],
        }
    )
    return evaluate(frame, scores[rows])


def test_compare_reports_what_a_direct_computation_gives(
    kafka_bootstrap: str, base_settings: Settings, tmp_path: Path
) -> None:
    settings = make_test_settings(base_settings, kafka_bootstrap, tmp_path, partitions=3)
    setup_topics(settings)
    d = _synthetic()
    scores, shadows, labels = _records(d)
    produce(settings, settings.topics.scores, scores)
    produce(settings, settings.topics.scores_shadow, shadows)
    produce(settings, settings.topics.labels, labels, key_field="terminal_id")

    report = compare(settings, "fraud", idle_s=5.0, timeout_s=120.0)

    assert report.records == {
        "scores": len(scores),
        "scores-shadow": len(shadows),
        "transaction-labels": len(labels),
    }
    assert report.skipped == {}
    assert report.labels == len(labels)
    assert report.champion_version == 1
    assert [v.version for v in report.versions] == [1, 2, 3]
    champion, canary, shadow = report.versions
    on_canary, labelled = d["on_canary"], d["labelled"]
    champ_rows = np.flatnonzero(~on_canary)
    canary_rows = np.flatnonzero(on_canary)
    assert 0.1 < len(canary_rows) / N < 0.3

    assert (champion.events, champion.roles, champion.semver) == (
        len(champ_rows),
        ["champion"],
        "1.0.0",
    )
    assert (canary.events, canary.roles, canary.semver) == (
        len(canary_rows),
        ["challenger"],
        "1.1.0",
    )
    assert canary.paired_events == 0 and canary.agreement is None and canary.psi is None
    assert (shadow.events, shadow.paired_events, shadow.roles) == (
        len(champ_rows),
        len(champ_rows),
        ["shadow"],
    )

    champ_s, shadow_s = d["champ"][champ_rows], d["shadow"][champ_rows]
    assert shadow.agreement == pytest.approx(np.mean((champ_s >= 0.5) == (shadow_s >= 0.5)))
    assert shadow.psi == pytest.approx(_psi(shadow_s, champ_s), rel=1e-9)
    assert shadow.psi_reading is not None

    for version, rows, values in (
        (champion, champ_rows, d["champ"]),
        (canary, canary_rows, d["canary"]),
        (shadow, champ_rows, d["shadow"]),
    ):
        with_label = rows[labelled[rows]]
        want = _expected_metrics(d, with_label, values)
        got = version.metrics
        assert got is not None
        assert (got.labelled, got.frauds) == (len(with_label), int(d["fraud"][with_label].sum()))
        assert got.auc_roc == pytest.approx(want["auc_roc"], rel=1e-9)
        assert got.average_precision == pytest.approx(want["average_precision"], rel=1e-9)
        assert got.card_precision_at_k == pytest.approx(want["card_precision_at_100"], rel=1e-9)
        assert 0.0 < got.card_precision_at_k <= 1.0

    same = shadow.champion_metrics
    assert same is not None
    want = _expected_metrics(d, champ_rows[labelled[champ_rows]], d["champ"])
    assert same.auc_roc == pytest.approx(want["auc_roc"], rel=1e-9)
    assert same.average_precision == pytest.approx(want["average_precision"], rel=1e-9)
    assert '"champion_version": 1' in render_json(report)
