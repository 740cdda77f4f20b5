"""Figures from the workers' own ``/metrics``: throughput, end-to-end p99, PSI, serving set.

The exposition is parsed with ``prometheus_client.parser``; rates and p99 come from the
difference between two scrapes of one worker (the recent past, not the process's lifetime),
the p99 the way PromQL's ``histogram_quantile`` interpolates within a bucket.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

SCORED = "stream_infer_events_scored"
END_TO_END = "stream_infer_end_to_end_seconds"
PSI = "stream_infer_model_psi"
SERVING = "stream_infer_model_serving"
ROLLBACKS = "stream_infer_model_rollbacks"
#: The label processor's (stream_infer/labels/metrics.py), when a --scrape URL is one.
LABEL_WATERMARK = "stream_infer_labels_watermark_seconds"

Buckets = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Scrape:
    """One worker's metrics at one moment (``at``: monotonic seconds). ``buckets`` are the
    end-to-end histogram's cumulative ``(le, count)`` pairs, +Inf last."""

    url: str
    at: float
    error: str | None = None
    scored: float = 0.0
    rollbacks: float = 0.0
    buckets: Buckets = ()
    psi: dict[tuple[str, str], float] = field(default_factory=dict)
    serving: tuple[tuple[str, str, str], ...] = ()
    label_watermark_s: float | None = None


@dataclass(frozen=True)
class WorkerFigures:
    """What the status page shows of one worker: per-second scores and p99 (seconds) since
    the previous scrape (None until there are two, or when nothing was scored)."""

    url: str
    error: str | None
    scored_per_s: float | None
    p99_s: float | None
    psi: dict[tuple[str, str], float]
    serving: tuple[tuple[str, str, str], ...]
    rollbacks: float
    label_watermark_s: float | None = None


def parse(url: str, text: str, at: float) -> Scrape:
    """The figures this module reads from one exposition text.

    Raises:
        ValueError: the text is not the Prometheus text format.
    """
    scored = rollbacks = 0.0
    buckets: list[tuple[float, float]] = []
    psi: dict[tuple[str, str], float] = {}
    serving: list[tuple[str, str, str]] = []
    watermark: float | None = None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if family.name == SCORED and s.name == f"{SCORED}_total":
                scored += s.value
            elif family.name == ROLLBACKS and s.name == f"{ROLLBACKS}_total":
                rollbacks += s.value
            elif family.name == END_TO_END and s.name == f"{END_TO_END}_bucket":
                buckets.append((float(s.labels["le"]), s.value))
            elif family.name == PSI:
                psi[(s.labels.get("version", ""), s.labels.get("role", ""))] = s.value
            elif family.name == LABEL_WATERMARK and not math.isnan(s.value):
                watermark = s.value
            elif family.name == SERVING and s.value == 1:
                labels = s.labels
                serving.append(
                    (labels.get("role", ""), labels.get("version", ""), labels.get("semver", ""))
                )
    return Scrape(
        url=url,
        at=at,
        scored=scored,
        rollbacks=rollbacks,
        buckets=tuple(sorted(buckets)),
        psi=psi,
        serving=tuple(sorted(serving)),
        label_watermark_s=watermark,
    )


def fetch(url: str, at: float, timeout_s: float) -> Scrape:
    """Scrape ``url``; a failure is a :class:`Scrape` carrying its error, never raised (one
    worker down must not hide the others)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            text = resp.read().decode("utf-8", errors="replace")
        return parse(url, text, at)
    except urllib.error.URLError as exc:
        return Scrape(url=url, at=at, error=f"not answering: {exc.reason}")
    except (OSError, ValueError) as exc:
        return Scrape(url=url, at=at, error=f"not answering: {exc}")


def quantile(q: float, buckets: Buckets) -> float | None:
    """``histogram_quantile(q, ...)`` over cumulative ``(le, count)`` pairs, or None when
    they count nothing. A rank in the +Inf bucket answers the largest finite bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def _difference(now: Buckets, before: Buckets) -> Buckets:
    if [le for le, _ in now] != [le for le, _ in before]:
        return now
    return tuple((le, c - b) for (le, c), (_, b) in zip(now, before, strict=True))


def figures(now: Scrape, before: Scrape | None) -> WorkerFigures:
    """A worker's figures between two scrapes of it. A counter that went down (a restart)
    counts from zero."""
    rate: float | None = None
    buckets = now.buckets
    usable = before is not None and before.error is None and now.at > before.at
    if usable and before is not None:
        if now.scored >= before.scored:
            rate = (now.scored - before.scored) / (now.at - before.at)
            buckets = _difference(now.buckets, before.buckets)
        else:
            rate = now.scored / (now.at - before.at)
    return WorkerFigures(
        url=now.url,
        error=now.error,
        scored_per_s=rate if now.error is None else None,
        p99_s=quantile(0.99, buckets) if now.error is None else None,
        psi=now.psi,
        serving=now.serving,
        rollbacks=now.rollbacks,
        label_watermark_s=now.label_watermark_s,
    )


def total_rate(workers: Sequence[WorkerFigures]) -> float | None:
    """Scores per second over every worker that answered (None if none did)."""
    rates = [w.scored_per_s for w in workers if w.scored_per_s is not None]
    return sum(rates) if rates else None
