"""The evidence to promote a model version, computed from score, shadow and label records.

:func:`build_report` joins records of ``scores``, ``scores-shadow`` and ``transaction-labels``
by ``transaction_id`` and reports per model version of one model name (reading the topics is
:mod:`stream_infer.model.compare`'s job):

- ``events``: distinct transactions the version scored (a redelivered score counts once);
- against the champion, on the transactions both scored (``paired_events``): ``agreement``,
  the share on which both give the same verdict (each by its own rule: its manifest's positive
  side and threshold), and ``psi``, the PSI of the version's scores against the champion's
  deciles and histogram on those transactions (raw scores: two versions whose scores mean
  different things show a large PSI, as they should);
- on its transactions whose label has arrived: AUC ROC, average precision and card
  precision@k (card = the score record's ``customer_id``), as
  :func:`stream_infer.training.evaluate.evaluate` defines them, on the version's ranking (its
  scores negated when low is positive, so an anomaly score ranks anomalies first); and the
  champion's figures on the same labelled transactions where it scored them too (the fair
  comparison).

Where each score comes from: a ``scores`` record is the serving version's verdict
(``model_role`` champion or challenger; records written before roles existed have none); a
``scores-shadow`` record carries the shadow version's score and, when present, the champion's
(``champion_version``, ``champion_score``) on the same transaction. A version that scored only
canary customers has no champion score on them: its ``agreement`` and ``psi`` are None.

The champion is ``champion`` if given, else the version most often named champion (by
``model_role`` or ``champion_version``), else the version with most ``scores`` records.
Records that are not JSON objects or lack ``transaction_id``, ``model_version`` or ``score``
(``tx_fraud`` or ``tx_datetime`` for labels) are counted in ``skipped`` and left out; every
other field is optional. Everything is held in memory: one entry per transaction and version.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
from pydantic import BaseModel, ConfigDict

from stream_infer.model.drift import psi_between, reading
from stream_infer.model.verdict import ScoreRule
from stream_infer.training.evaluate import evaluate


class _Report(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LabelMetrics(_Report):
    """Figures on labelled transactions; ``auc_roc`` is None when only one class is there."""

    labelled: int
    frauds: int
    auc_roc: float | None
    average_precision: float
    card_precision_at_k: float
    k: int


class VersionReport(_Report):
    """One model version's evidence (see the module docstring for each figure).

    ``roles``: as its records name them (champion, challenger, shadow), or "serving" for a
    ``scores`` record without ``model_role``.
    """

    version: int
    semver: str | None
    roles: list[str]
    is_champion: bool
    positive: str = "high"
    threshold: float | None = None
    events: int
    paired_events: int
    agreement: float | None
    psi: float | None
    psi_reading: str | None
    metrics: LabelMetrics | None
    champion_metrics: LabelMetrics | None


class CompareReport(_Report):
    """Every version of ``model_name`` seen on the topics, champion first."""

    model_name: str
    threshold: float
    champion_version: int | None
    records: dict[str, int]
    skipped: dict[str, int]
    labels: int
    versions: list[VersionReport]


@dataclass
class _Joined:
    scores: dict[int, dict[str, float]] = field(default_factory=dict)
    semver: dict[int, str] = field(default_factory=dict)
    roles: dict[int, set[str]] = field(default_factory=dict)
    champion_votes: Counter[int] = field(default_factory=Counter)
    serving: Counter[int] = field(default_factory=Counter)
    customer: dict[str, str] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, version: int, tx: str, score: float, role: str, *, first: bool = False) -> None:
        per_tx = self.scores.setdefault(version, {})
        # A redelivery carries the same verdict: keep one (the first one if asked).
        per_tx[tx] = per_tx.get(tx, score) if first else score
        self.roles.setdefault(version, set()).add(role)


def _as_object(raw: bytes | Mapping[str, Any]) -> Mapping[str, Any] | None:
    if isinstance(raw, Mapping):
        return raw
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _version(value: object) -> int | None:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _score_fields(rec: Mapping[str, Any], name: str) -> tuple[str, int, float] | None:
    model = rec.get("model_name")
    if model is not None and model != name:
        return None
    tx, version, score = rec.get("transaction_id"), rec.get("model_version"), rec.get("score")
    version, score = _version(version), _number(score)
    if not isinstance(tx, str | int) or version is None or score is None:
        return None
    return str(tx), version, score


def _join(
    name: str,
    scores: Iterable[bytes | Mapping[str, Any]],
    shadows: Iterable[bytes | Mapping[str, Any]],
) -> _Joined:
    joined = _Joined()
    for topic, records in (("scores", scores), ("scores-shadow", shadows)):
        for raw in records:
            rec = _as_object(raw)
            fields = None if rec is None else _score_fields(rec, name)
            if rec is None or fields is None:
                if rec is None or rec.get("model_name", name) == name:
                    joined.skipped[topic] += 1
                continue
            tx, version, score = fields
            role = str(rec.get("model_role") or ("shadow" if topic != "scores" else "serving"))
            joined.add(version, tx, score, role)
            if isinstance(rec.get("model_semver"), str):
                joined.semver[version] = rec["model_semver"]
            if isinstance(rec.get("customer_id"), str | int):
                joined.customer[tx] = str(rec["customer_id"])
            if topic == "scores":
                joined.serving[version] += 1
                if role == "champion":
                    joined.champion_votes[version] += 1
                continue
            champ = _version(rec.get("champion_version"))
            champ_score = _number(rec.get("champion_score"))
            if champ is not None:
                joined.champion_votes[champ] += 1
                if champ_score is not None:
                    # The champion's own record on `scores` wins over the copy a shadow carries.
                    joined.add(champ, tx, champ_score, "champion", first=True)
    return joined


def _when(value: object) -> datetime | None:
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    # Naive times are UTC by contract (events.py).
    return None if when is None else when.replace(tzinfo=when.tzinfo or UTC)


def _labels(
    labels: Iterable[bytes | Mapping[str, Any]], skipped: Counter[str]
) -> dict[str, tuple[int, datetime]]:
    out: dict[str, tuple[int, datetime]] = {}
    for raw in labels:
        rec = _as_object(raw) or {}
        tx, fraud, when = rec.get("transaction_id"), rec.get("tx_fraud"), rec.get("tx_datetime")
        day = _when(when)
        if not isinstance(tx, str | int) or fraud not in (0, 1) or day is None:
            skipped["transaction-labels"] += 1
            continue
        out[str(tx)] = (int(fraud), day)
    return out


def _metrics(
    txs: list[str],
    scores: Mapping[str, float],
    labels: Mapping[str, tuple[int, datetime]],
    customer: Mapping[str, str],
    k: int,
    rule: ScoreRule,
) -> LabelMetrics | None:
    if not txs:
        return None
    frame = pd.DataFrame(
        {
            "customer_id": [customer.get(tx, "") for tx in txs],
            "tx_datetime": pd.to_datetime([labels[tx][1] for tx in txs], utc=True),
            "tx_fraud": [labels[tx][0] for tx in txs],
        }
    )
    figures = evaluate(frame, rule.ranking([scores[tx] for tx in txs]), k)
    auc = figures["auc_roc"]
    return LabelMetrics(
        labelled=len(txs),
        frauds=int(figures["test_frauds"]),
        auc_roc=None if math.isnan(auc) else auc,
        average_precision=figures["average_precision"],
        card_precision_at_k=figures[f"card_precision_at_{k}"],
        k=k,
    )


def _pick_champion(joined: _Joined, champion: int | None) -> int | None:
    votes = joined.champion_votes or joined.serving
    return champion if champion is not None or not votes else votes.most_common(1)[0][0]


def build_report(
    name: str,
    scores: Iterable[bytes | Mapping[str, Any]],
    shadows: Iterable[bytes | Mapping[str, Any]],
    labels: Iterable[bytes | Mapping[str, Any]],
    *,
    threshold: float,
    champion: int | None = None,
    k: int = 100,
    records: Mapping[str, int] | None = None,
    rules: Mapping[int, ScoreRule] | None = None,
) -> CompareReport:
    """The report for ``name`` from records of the three topics (raw JSON bytes or dicts).

    ``rules`` says what each version's score means (from its manifest); a version without one
    flags a score at or above ``threshold`` (agreement compares flags);
    ``champion`` overrides the inferred champion version; ``k`` is card precision's cards a
    day; ``records`` is what the caller read per topic (shown in the report as is).

    Raises:
        ValueError: ``k`` is not positive (from the metrics).
    """
    joined = _join(name, scores, shadows)
    known = _labels(labels, joined.skipped)
    champ = _pick_champion(joined, champion)
    champ_scores = joined.scores.get(champ, {}) if champ is not None else {}
    known_rules = dict(rules or {})

    def rule_of(version: int | None) -> ScoreRule:
        fallback = ScoreRule(threshold)
        return fallback if version is None else known_rules.get(version, fallback)

    champ_rule = rule_of(champ)
    reports: list[VersionReport] = []
    for version in sorted(joined.scores, key=lambda v: (v != champ, v)):
        mine = joined.scores[version]
        is_champ = version == champ
        rule = rule_of(version)
        paired = [] if is_champ else [tx for tx in mine if tx in champ_scores]
        agreement = psi_value = None
        if paired:
            a = np.array([mine[tx] for tx in paired], dtype=np.float64)
            b = np.array([champ_scores[tx] for tx in paired], dtype=np.float64)
            agreement = float(np.mean(rule.flags(a) == champ_rule.flags(b)))
            psi_value = psi_between(a, b)
        labelled = [tx for tx in mine if tx in known]
        both = [tx for tx in labelled if tx in champ_scores] if not is_champ else []
        reports.append(
            VersionReport(
                version=version,
                semver=joined.semver.get(version),
                roles=sorted(joined.roles[version]),
                is_champion=is_champ,
                positive=rule.positive,
                threshold=rule.threshold,
                events=len(mine),
                paired_events=len(paired),
                agreement=agreement,
                psi=psi_value,
                psi_reading=None if psi_value is None else reading(psi_value),
                metrics=_metrics(labelled, mine, known, joined.customer, k, rule),
                champion_metrics=_metrics(
                    both, champ_scores, known, joined.customer, k, champ_rule
                ),
            )
        )
    return CompareReport(
        model_name=name,
        threshold=threshold,
        champion_version=champ,
        records=dict(records or {}),
        skipped=dict(joined.skipped),
        labels=len(known),
        versions=reports,
    )
