"""``stream-infer model compare NAME``: read the score topics to their end and report.

:func:`compare` reads ``topics.scores``, ``topics.scores_shadow`` and ``topics.labels`` from the
beginning to their end as they are when it starts and hands the records to
:func:`stream_infer.model.evidence.build_report` (what each figure means is documented there);
:func:`render_table` and :func:`render_json` show the result.

Reading: Tansu answers ListOffsets wrongly, so the end of a partition is the partition-EOF
event librdkafka raises when a fetch reaches the high watermark (the fetch's own answer), or
``idle_s`` without any record from it. A topic that does not exist reads as empty.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from rich.table import Table

from stream_infer.config import Settings
from stream_infer.errors import RetryableError, StreamInferError
from stream_infer.model.evidence import CompareReport, LabelMetrics, VersionReport, build_report
from stream_infer.model.registry import open_registry
from stream_infer.model.verdict import ScoreRule

__all__ = [
    "CompareReport",
    "LabelMetrics",
    "VersionReport",
    "build_report",
    "compare",
    "read_to_end",
    "render_json",
    "render_table",
]


def read_to_end(
    settings: Settings, topics: Iterable[str], *, idle_s: float = 5.0, timeout_s: float = 300.0
) -> dict[str, list[bytes]]:
    """Every record value of ``topics``, from the beginning to their end when this starts.

    A topic that does not exist reads as empty. A partition ends at its EOF event or after
    ``idle_s`` without a record (see the module docstring).

    Raises:
        RetryableError: the topics were not read to their end within ``timeout_s``.
    """
    cfg = settings.kafka.client_config()
    cfg.update(
        {
            "group.id": f"stream-infer-compare-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,  # Tansu holds fetches for the full wait otherwise
        }
    )
    consumer = Consumer(cfg)
    out: dict[str, list[bytes]] = {}
    try:
        assignment: list[TopicPartition] = []
        for topic in topics:
            out[topic] = []
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout_s
        pending = {(tp.topic, tp.partition): time.monotonic() for tp in assignment}
        while pending:
            if time.monotonic() > deadline:
                msg = f"compare: {len(pending)} partitions not read to their end in {timeout_s}s"
                raise RetryableError(msg)
            for message in consumer.consume(1000, 0.1):
                key = (message.topic(), message.partition())
                if key not in pending:
                    continue  # past the end this read promised
                err = message.error()
                if err is None:
                    out[key[0]].append(message.value() or b"")
                    pending[key] = time.monotonic()
                elif err.code() == KafkaError._PARTITION_EOF:
                    del pending[key]
            now = time.monotonic()
            for key, last in list(pending.items()):
                if now - last > idle_s:
                    del pending[key]
    finally:
        consumer.close()
    return out


def compare(
    settings: Settings,
    name: str,
    *,
    champion: int | None = None,
    k: int = 100,
    idle_s: float = 5.0,
    timeout_s: float = 300.0,
) -> CompareReport:
    """:func:`build_report` over the topics of ``settings``, each version's verdict by its
    manifest's rule (:class:`ScoreRule`; ``model.threshold`` where a manifest records no
    threshold, or a version is not in the registry).

    Raises:
        RetryableError: as :func:`read_to_end`.
    """
    t = settings.topics
    kinds = {"scores": t.scores, "scores-shadow": t.scores_shadow, "transaction-labels": t.labels}
    read = read_to_end(settings, kinds.values(), idle_s=idle_s, timeout_s=timeout_s)
    return build_report(
        name,
        read[t.scores],
        read[t.scores_shadow],
        read[t.labels],
        threshold=settings.model.threshold,
        champion=champion,
        k=k,
        records={kind: len(read[topic]) for kind, topic in kinds.items()},
        rules=version_rules(settings, name),
    )


def version_rules(settings: Settings, name: str) -> dict[int, ScoreRule]:
    """Each registered version's :class:`ScoreRule` (versions with unreadable manifests are
    left out: they are judged by ``model.threshold``)."""
    registry = open_registry(settings.model)
    out: dict[int, ScoreRule] = {}
    for version in registry.versions(name):
        try:
            manifest = registry.manifest(name, version)
        except StreamInferError:
            continue
        out[version] = ScoreRule.of(manifest, settings.model.threshold)
    return out


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _metric_cells(m: LabelMetrics | None) -> list[str]:
    if m is None:
        return ["-", "-", "-"]
    return [_fmt(m.auc_roc), _fmt(m.average_precision), _fmt(m.card_precision_at_k)]


def render_table(report: CompareReport) -> Table:
    """The report as a rich table, one row per version (champion first, marked *)."""
    k = next((v.metrics.k for v in report.versions if v.metrics), 100)
    table = Table(
        title=f"{report.model_name}: champion v{report.champion_version}, "
        f"threshold {report.threshold}, {report.labels} labels"
    )
    table.add_column("version")
    table.add_column("role")
    table.add_column("positive if")
    for col in ("events", "paired", "agree", "PSI", "labelled", "frauds", "AUC", "AP"):
        table.add_column(col, justify="right")
    for col in (f"CP@{k}", "champ AUC", "champ AP", f"champ CP@{k}"):
        table.add_column(col, justify="right")
    for v in report.versions:
        m = v.metrics
        table.add_row(
            f"v{v.version}" + (f" ({v.semver})" if v.semver else ""),
            "+".join(v.roles) + (" *" if v.is_champion else ""),
            (
                "-"
                if v.threshold is None
                else f"{'>=' if v.positive == 'high' else '<='} {v.threshold:g}"
            ),
            str(v.events),
            "-" if v.is_champion else str(v.paired_events),
            _fmt(v.agreement, ".1%"),
            "-" if v.psi is None else f"{v.psi:.3f} ({v.psi_reading})",
            str(m.labelled if m else 0),
            str(m.frauds if m else 0),
            *_metric_cells(m),
            *_metric_cells(v.champion_metrics),
        )
    return table


def render_json(report: CompareReport) -> str:
    """The report as indented JSON (missing figures are null)."""
    return report.model_dump_json(indent=2)
