"""The compare join and report (evidence.py) and its renderers on hand-made records."""

from __future__ import annotations

import io
import math

import numpy as np
import orjson
import pandas as pd
import pytest
from rich.console import Console

from stream_infer.model.compare import render_json, render_table
from stream_infer.model.drift import psi_between
from stream_infer.model.evidence import CompareReport, build_report
from stream_infer.training.evaluate import evaluate

DAY = "2026-04-01T10:00:00+00:00"


def score(tx: int, version: int, value: float, role: str | None, **extra: object) -> dict:
    rec: dict[str, object] = {
        "transaction_id": f"tx-{tx}",
        "customer_id": f"c{tx % 7}",
        "score": value,
        "is_fraud": value >= 0.5,
        "model_name": "fraud",
        "model_version": version,
        "event_time": DAY,
        "scored_at": DAY,
        "latency_ms": 1.0,
    }
    if role is not None:
        rec["model_role"] = role
    rec.update(extra)
    return rec


def label(tx: int, fraud: int) -> dict:
    return {"transaction_id": f"tx-{tx}", "tx_datetime": DAY, "terminal_id": "t", "tx_fraud": fraud}


def test_shadow_version_against_the_champion_on_the_same_events() -> None:
    rng = np.random.default_rng(5)
    champ = rng.random(40)
    shadow = np.clip(champ + rng.normal(0, 0.2, 40), 0, 1)
    frauds = (rng.random(40) < 0.3).astype(int)
    scores = [score(i, 1, float(champ[i]), "champion") for i in range(40)]
    shadows = [
        {
            "transaction_id": f"tx-{i}",
            "customer_id": f"c{i % 7}",
            "model_name": "fraud",
            "model_version": 2,
            "model_semver": "1.1.0",
            "model_role": "shadow",
            "score": float(shadow[i]),
            "champion_version": 1,
            "champion_score": float(champ[i]),
        }
        for i in range(40)
    ]
    labels = [label(i, int(frauds[i])) for i in range(30)]  # the last 10 not labelled yet
    report = build_report("fraud", scores, shadows, labels, threshold=0.5)

    assert report.champion_version == 1
    champion, challenger = report.versions
    assert (champion.version, champion.is_champion, champion.events) == (1, True, 40)
    assert champion.agreement is None and champion.psi is None
    assert (challenger.version, challenger.semver, challenger.roles) == (2, "1.1.0", ["shadow"])
    assert challenger.paired_events == 40
    assert challenger.agreement == pytest.approx(np.mean((shadow >= 0.5) == (champ >= 0.5)))
    assert challenger.psi == pytest.approx(psi_between(shadow, champ))

    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i % 7}" for i in range(30)],
            "tx_datetime": pd.to_datetime([DAY] * 30, utc=True),
            "tx_fraud": frauds[:30],
        }
    )
    want = evaluate(frame, shadow[:30])
    got = challenger.metrics
    assert got is not None
    assert (got.labelled, got.frauds) == (30, int(frauds[:30].sum()))
    assert got.auc_roc == pytest.approx(want["auc_roc"])
    assert got.average_precision == pytest.approx(want["average_precision"])
    assert got.card_precision_at_k == pytest.approx(want["card_precision_at_100"])
    paired = challenger.champion_metrics
    assert paired is not None
    assert paired.auc_roc == pytest.approx(evaluate(frame, champ[:30])["auc_roc"])


def test_canary_challenger_has_no_paired_figures_and_duplicates_count_once() -> None:
    scores = [
        score(i, 1 if i % 4 else 3, 0.1 * (i % 10), "champion" if i % 4 else "challenger")
        for i in range(20)
    ]
    scores.append(dict(scores[0]))  # a redelivered challenger score
    report = build_report("fraud", scores, [], [label(i, i % 2) for i in range(20)], threshold=0.5)
    champion, canary = report.versions
    assert (champion.version, champion.events) == (1, 15)
    assert (canary.version, canary.events, canary.roles) == (3, 5, ["challenger"])
    assert canary.paired_events == 0 and canary.agreement is None and canary.psi is None
    assert canary.metrics is not None and canary.metrics.labelled == 5
    assert canary.champion_metrics is None


def test_missing_optional_fields_and_bad_records_are_tolerated() -> None:
    bare = {"transaction_id": 1, "model_version": "4", "score": 0.7}  # pre-role, pre-name
    other_model = score(2, 9, 0.2, "champion", model_name="anomaly")
    raw = [
        orjson.dumps(bare),
        b"not json",
        b"[1, 2]",
        orjson.dumps(other_model),
        orjson.dumps({"transaction_id": "x", "model_version": 4, "score": "high"}),
    ]
    labels = [
        orjson.dumps({"transaction_id": 1, "tx_fraud": 1, "tx_datetime": "2026-04-01 10:00:00"}),
        b"{}",
        orjson.dumps({"transaction_id": 2, "tx_fraud": 1, "tx_datetime": "soon"}),
    ]
    report = build_report("fraud", raw, [b""], labels, threshold=0.5)
    assert report.champion_version == 4  # the only serving version
    (only,) = report.versions
    assert (only.version, only.roles, only.events, only.semver) == (4, ["serving"], 1, None)
    assert only.metrics is not None
    assert (only.metrics.labelled, only.metrics.frauds, only.metrics.auc_roc) == (1, 1, None)
    # Records of another model are not "skipped": they are someone else's.
    assert report.skipped == {"scores": 3, "scores-shadow": 1, "transaction-labels": 2}
    assert report.labels == 1


def test_explicit_champion_and_empty_topics() -> None:
    empty = build_report("fraud", [], [], [], threshold=0.5)
    assert empty.champion_version is None and empty.versions == []
    scores = [score(i, 1, 0.3, None) for i in range(5)] + [score(i, 2, 0.6, None) for i in range(3)]
    report = build_report("fraud", scores, [], [], threshold=0.5, champion=2)
    assert [v.version for v in report.versions] == [2, 1]
    assert report.versions[1].agreement == 0.0 and report.versions[1].paired_events == 3


def test_renderers() -> None:
    scores = [score(i, 1, 0.2 + 0.01 * i, "champion") for i in range(30)]
    shadows = [score(i, 2, 0.25 + 0.01 * i, "shadow", champion_version=1) for i in range(30)]
    report = build_report(
        "fraud",
        scores,
        shadows,
        [label(i, int(i % 3 == 0)) for i in range(30)],
        threshold=0.5,
        records={"scores": 30},
    )
    console = Console(file=io.StringIO(), width=250, record=True)
    console.print(render_table(report))
    text = console.export_text()
    assert "champion v1" in text and "v2" in text and "shadow" in text
    back = CompareReport.model_validate_json(render_json(report))
    assert back == report
    parsed = orjson.loads(render_json(report))
    assert parsed["versions"][1]["paired_events"] == 30
    assert not math.isnan(parsed["versions"][1]["psi"])
