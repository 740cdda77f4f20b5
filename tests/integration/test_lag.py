"""`stream-infer lag` and its exporter against a real broker and real workers: with the
workers stopped and N more events produced, both report a lag of exactly N, lag seconds equal
to the age of each partition's oldest waiting event, and STOP; with a worker running again,
lag falls to 0 and the status returns to OK. On Apache Kafka log-end offsets are read by
ListOffsets; on Tansu (which answers ListOffsets wrongly) by the fetch high watermark."""

from __future__ import annotations

import time
from pathlib import Path

from stream_infer.config import Settings

from .conftest import make_test_settings
from .kafka_io import make_transactions, produce, read_topic, setup_topics
from .lag_io import (
    Produced,
    Samples,
    current_statuses,
    exporter,
    poll,
    produce_timed,
    run_lag,
    value,
)
from .processes import WorkerProcess

WARM = 30
WAITING = 25
#: Record timestamps of the waiting events start this far in the past.
AGE_S = 600
#: Lag seconds are exact up to the millisecond timestamps and the sample's own duration.
TOLERANCE_S = 1.0


def _settings(base: Settings, bootstrap: str, tmp: Path, registry: Path) -> Settings:
    return make_test_settings(base, bootstrap, tmp, model={"registry_dir": str(registry)})


def _score_then_stop(settings: Settings, tmp: Path) -> None:
    """A worker scores WARM events, then stops gracefully (drains, commits)."""
    worker = WorkerProcess(settings, tmp / "w1.log")
    try:
        worker.wait_for("assigned [")
        produce(settings, settings.topics.transactions, make_transactions(WARM))
        read_topic(settings, settings.topics.scores, lambda r: len(r) >= WARM)
    finally:
        code = worker.terminate()
    assert code == 0, worker.output()[-3000:]


def _check_cli_while_stopped(
    settings: Settings, method: str, produced: Produced, label_group: str
) -> None:
    rows, before, after = run_lag(settings, "--end-offsets", method)
    group = settings.worker.group_id
    scoring = {r["partition"]: r for r in rows if r["group"] == group}
    assert set(scoring) == {0, 1, 2}
    assert sum(r["lag"] for r in scoring.values()) == WAITING
    for p, row in scoring.items():
        assert row["method"] == method
        assert row["log_end_offset"] - row["current_offset"] == row["lag"]
        assert row["lag"] == produced.counts.get(p, 0), row
        if p in produced.oldest_ms:
            oldest_s = produced.oldest_ms[p] / 1000
            low, high = before - oldest_s - TOLERANCE_S, after - oldest_s + TOLERANCE_S
            assert low <= row["lag_seconds"] <= high, (row, low, high)
            # No consumer and an offset that did not move over the samples.
            assert row["status"] == "STOP", row
        else:
            assert row["lag_seconds"] == 0 and row["status"] == "OK", row
    labels = [r for r in rows if r["group"] == label_group]
    assert {r["partition"] for r in labels} == {0, 1, 2}  # listed before anything committed
    assert all(r["lag"] is None and r["status"] is None for r in labels), labels


def _lag_falls_to_zero_and_recovers(settings: Settings, tmp: Path, method: str) -> None:
    group = settings.worker.group_id
    _score_then_stop(settings, tmp)
    rows, _, _ = run_lag(settings, "--end-offsets", method, "--samples", "1")
    warm = [r for r in rows if r["group"] == group]
    assert sum(r["current_offset"] for r in warm) == WARM
    assert all(r["lag"] == 0 and r["status"] == "OK" for r in warm), warm

    produced = produce_timed(settings, WAITING, int((time.time() - AGE_S) * 1000), "late")
    _check_cli_while_stopped(settings, method, produced, f"{group}-labels")

    with exporter(
        settings, tmp / "exporter.log", "--interval", "0.5", "--end-offsets", method
    ) as exp:

        def stopped() -> Samples | None:
            m = exp.metrics()
            if m is None or value(m, "kafka_consumergroup_group_sum_lag", group=group) != WAITING:
                return None
            statuses = current_statuses(m, group)
            return m if all(statuses.get(p) == "STOP" for p in produced.oldest_ms) else None

        m = poll(stopped, what="the exporter to report the waiting events and STOP")
        taken = value(m, "stream_infer_lag_sample_timestamp_seconds")
        assert taken is not None
        for p in range(3):
            labels = {"group": group, "partition": str(p)}
            lag = value(m, "kafka_consumergroup_group_lag", **labels)
            assert lag == produced.counts.get(p, 0)
            seconds = value(m, "kafka_consumergroup_group_lag_seconds", **labels)
            assert seconds is not None
            if p in produced.oldest_ms:
                expected = taken - produced.oldest_ms[p] / 1000
                assert abs(seconds - expected) <= TOLERANCE_S, (p, seconds, expected)
        assert value(m, "kafka_consumergroup_group_max_lag", group=group) == max(
            produced.counts.values()
        )
        latest = sum(
            v
            for lbl, v in m["kafka_partition_latest_offset"]
            if lbl["topic"] == settings.topics.transactions
        )
        assert latest == WARM + WAITING
        group_status = [
            lbl["status"]
            for lbl, v in m["stream_infer_consumergroup_group_status"]
            if lbl["group"] == group and v == 1
        ]
        assert group_status == ["ERR"]

        worker = WorkerProcess(settings, tmp / "w2.log")
        try:
            worker.wait_for("assigned [")

            def recovered() -> Samples | None:
                m = exp.metrics()
                if m is None or value(m, "kafka_consumergroup_group_sum_lag", group=group) != 0:
                    return None
                statuses = current_statuses(m, group)
                return m if set(statuses.values()) == {"OK"} and len(statuses) == 3 else None

            poll(recovered, what="lag 0 and OK after the worker came back")
            rows, _, _ = run_lag(settings, "--end-offsets", method)
            scoring = [r for r in rows if r["group"] == group]
            assert [r["lag"] for r in scoring] == [0, 0, 0]
            assert {r["status"] for r in scoring} == {"OK"}
            assert sum(r["current_offset"] for r in scoring) == WARM + WAITING
        finally:
            code = worker.terminate()
        assert code == 0, worker.output()[-3000:]
    assert exp.proc.returncode == 0, exp.output()[-3000:]


def test_lag_on_tansu_by_fetch_high_watermark(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    settings = _settings(base_settings, kafka_bootstrap, tmp_path, model_registry)
    setup_topics(settings)
    _lag_falls_to_zero_and_recovers(settings, tmp_path, "fetch")


def test_lag_on_apache_kafka_by_list_offsets(
    base_settings: Settings, apache_kafka: str, tmp_path: Path, model_registry: Path
) -> None:
    settings = _settings(base_settings, apache_kafka, tmp_path, model_registry)
    setup_topics(settings)
    _lag_falls_to_zero_and_recovers(settings, tmp_path, "listoffsets")
