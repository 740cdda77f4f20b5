"""loadgen run against the real scoring worker: paced replay in, every score measured once."""

from __future__ import annotations

import threading
from pathlib import Path

from loadgen.measure import MeasureOptions
from loadgen.replay import ReplayOptions
from loadgen.run import run
from loadgen.simulator import SimulationConfig, generate
from loadgen.stream import Dataset
from stream_infer.config import Settings
from stream_infer.runtime import build_worker

from .conftest import make_test_settings
from .kafka_io import setup_topics


def test_run_measures_every_score_of_a_paced_replay(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    settings = make_test_settings(
        base_settings, kafka_bootstrap, tmp_path, model={"registry_dir": str(model_registry)}
    )
    setup_topics(settings)
    worker = build_worker(settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        data = Dataset.from_frame(generate(SimulationConfig(50, 100, 10, seed=5), progress=False))
        count = 300
        result = run(
            data,
            ReplayOptions(
                settings.topics.transactions,
                settings.topics.labels,
                rate=200.0,
                count=count,
                labels="inline",
            ),
            MeasureOptions(settings.topics.scores, idle_timeout_s=20.0, max_wait_s=120.0),
            settings.kafka.client_config(),
            progress=False,
        )
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert result.replay.transactions_sent == count and result.replay.delivery_errors == 0
    m = result.measurement
    assert m.stopped_by == "complete"
    assert m.accounting is not None and m.accounting.complete
    assert m.accounting.scored == count
    # The worker forwards the intended-send header: no fallbacks, latencies measured from it.
    assert m.header_fallbacks == 0 and m.skipped_old == 0
    assert (m.latency_ms > 0).all()
    summary = m.summary()
    assert summary["latency_ms"]["count"] == count
    assert summary["throughput"]["peak_per_s"] > 0
