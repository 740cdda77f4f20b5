"""The exporter's metrics, the CLI's rows and the status page, from a fake offset source."""

from __future__ import annotations

import json
from collections.abc import Sequence

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_infer.config import load_settings
from stream_infer.errors import RetryableError
from stream_infer.lag.dashboard import DashboardView, ModelPanel
from stream_infer.lag.exporter import LagMonitor, lag_registry
from stream_infer.lag.offsets import (
    EndOffsetMethod,
    GroupOffsets,
    Member,
    PartitionOffsets,
    Snapshot,
    default_groups,
)
from stream_infer.lag.page import age, render
from stream_infer.lag.report import as_json, as_text
from stream_infer.model.roles import RoleState


class FakeSource:
    """Serves scripted snapshots; an exception in the script is raised instead."""

    method: EndOffsetMethod = "fetch"

    def __init__(self, script: list[Snapshot | Exception]) -> None:
        self.script = script

    def sample(self, groups: Sequence[str]) -> Snapshot:
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


WORKER = Member("rdkafka-1", "/127.0.0.1", "stream-infer")


def snapshot(committed: tuple[int | None, int | None], live: bool, at: float = 1000.0) -> Snapshot:
    parts = tuple(
        PartitionOffsets(
            "scoring",
            "transactions",
            p,
            c,
            log_end=50,
            lag_seconds=None if c is None else (0.0 if c >= 50 else 12.5),
            member=WORKER if live and p == 0 else None,
        )
        for p, c in enumerate(committed)
    )
    group = GroupOffsets("scoring", "STABLE" if live else "EMPTY", live, parts)
    return Snapshot(at, "fetch", (group,))


def _metrics(monitor: LagMonitor) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = generate_latest(lag_registry(monitor, "test-cluster")).decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_collector_exposes_kafka_lag_exporter_names_and_status() -> None:
    source = FakeSource([snapshot((40, None), live=False), snapshot((40, None), live=False)])
    monitor = LagMonitor(source, ["scoring"], window=10, interval_s=1.0)
    monitor.sample_once()
    monitor.sample_once()
    m = _metrics(monitor)
    (labels, value), *_ = m["kafka_consumergroup_group_lag"]
    assert value == 10
    assert labels == {
        "cluster_name": "test-cluster",
        "group": "scoring",
        "topic": "transactions",
        "partition": "0",
        "member_host": "unknown",
        "consumer_id": "unknown",
        "client_id": "unknown",
    }
    assert len(m["kafka_consumergroup_group_lag"]) == 1  # nothing committed on partition 1
    assert m["kafka_consumergroup_group_lag_seconds"][0][1] == 12.5
    assert m["kafka_consumergroup_group_sum_lag"] == [
        ({"cluster_name": "test-cluster", "group": "scoring"}, 10.0)
    ]
    assert m["kafka_consumergroup_group_max_lag"][0][1] == 10
    assert m["kafka_consumergroup_group_max_lag_seconds"][0][1] == 12.5
    assert m["kafka_consumergroup_group_topic_sum_lag"][0] == (
        {"cluster_name": "test-cluster", "group": "scoring", "topic": "transactions"},
        10.0,
    )
    assert {lbl["partition"] for lbl, _ in m["kafka_partition_latest_offset"]} == {"0", "1"}
    current = [lbl["status"] for lbl, v in m["stream_infer_consumergroup_status"] if v == 1]
    assert current == ["STOP"]  # no consumer, offset unchanged across two samples
    groups = [lbl["status"] for lbl, v in m["stream_infer_consumergroup_group_status"] if v == 1]
    assert groups == ["ERR"]
    assert m["stream_infer_lag_sample_success"] == [({}, 1.0)]


def test_a_failed_sample_keeps_the_last_view_and_says_so() -> None:
    source = FakeSource([snapshot((50, 50), live=True), RetryableError("broker gone")])
    monitor = LagMonitor(source, ["scoring"], window=10, interval_s=1.0)
    monitor.sample_once()
    assert monitor.sample_once() is None
    assert monitor.error == "broker gone"
    m = _metrics(monitor)
    assert m["stream_infer_lag_sample_success"] == [({}, 0.0)]
    assert m["kafka_consumergroup_group_sum_lag"][0][1] == 0


def test_cli_rows_text_and_json() -> None:
    source = FakeSource([snapshot((40, None), live=True)])
    monitor = LagMonitor(source, ["scoring"], window=10, interval_s=1.0)
    view = monitor.sample_once()
    assert view is not None
    rows = json.loads(as_json(view))
    assert rows[0] == {
        "group": "scoring",
        "topic": "transactions",
        "partition": 0,
        "current_offset": 40,
        "log_end_offset": 50,
        "lag": 10,
        "lag_seconds": 12.5,
        "status": "UNKNOWN",  # one sample
        "consumer_id": "rdkafka-1",
        "host": "/127.0.0.1",
        "client_id": "stream-infer",
        "method": "fetch",
    }
    assert rows[1]["lag"] is None and rows[1]["status"] is None
    text = as_text(view)
    assert text.splitlines()[0] == "log-end offsets: fetch (high watermark of a fetch response)"
    header = text.splitlines()[2].split()
    assert header == [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "LAG-SECONDS",
        "STATUS",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]
    assert text.splitlines()[4].split()[3:6] == ["-", "50", "-"]


def test_status_page_escapes_and_shows_verdict_first() -> None:
    source = FakeSource([snapshot((40, 50), live=False), snapshot((40, 50), live=False)])
    monitor = LagMonitor(source, ["scoring"], window=10, interval_s=2.0)
    monitor.sample_once()
    view = monitor.sample_once()
    board = DashboardView(at=0.0, model=ModelPanel("fraud<x>", RoleState(champion=3)))
    html = render(view, None, board, "c<1>", refresh_s=2.0)
    assert '<meta http-equiv="refresh" content="2">' in html
    assert "fraud&lt;x&gt;" in html and "c&lt;1&gt;" in html and "<x>" not in html
    assert html.index(">ERR<") < html.index("<table>")
    assert "not consuming: STOP on 1/2 partitions (no commits, consumer gone)" in html
    assert "champion <b>v3</b>" in html


def test_age_reads_at_a_glance() -> None:
    assert [age(x) for x in (None, 0.84, 42.0, 192.0, 7500.0)] == [
        "-",
        "0.8 s",
        "42 s",
        "3 min 12 s",
        "2 h 05 min",
    ]


def test_default_groups_are_scoring_and_labels() -> None:
    settings = load_settings(worker={"group_id": "g1"}, topics={"transactions": "tx"})
    assert default_groups(settings) == {"g1": ("tx",), "g1-labels": ("transaction-labels",)}
