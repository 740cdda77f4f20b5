"""``model-control`` is compacted, and Apache Kafka's log cleaner really compacts it: after
many role changes only the latest announcement per model is left, and a worker started
afterwards serves the latest champion."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from stream_infer.config import ModelSettings, Settings
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.control import announce
from stream_infer.model.registry import open_registry

from .conftest import make_test_settings
from .kafka_io import make_transactions, produce, read_topic, setup_topics
from .processes import WorkerProcess

CHANGES = 9  # odd: the last promotion makes v2 (not the first registered) champion
#: Longer than the test topic's segment.ms: each announcement starts a segment of its own, and
#: only closed segments are ever compacted.
SEGMENT_MS = 100
PACE_S = 0.15


def _registry(root: Path) -> None:
    """fraud v1 (champion on registration) and v2, two small real models."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from stream_infer.model.export import to_onnx

    rng = np.random.default_rng(11)
    x = rng.normal(size=(500, len(FEATURE_NAMES))).astype(np.float32)
    registry = open_registry(ModelSettings(registry_dir=root))
    for threshold in (1.0, 0.5):
        y = (x[:, 0] + x[:, 3] > threshold).astype(int)
        clf = LogisticRegression(max_iter=500).fit(x, y)
        registry.register("fraud", to_onnx(clf, len(FEATURE_NAMES)), FEATURE_NAMES)


def _compact_fast(settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    entries = [
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
        for name, value in (("segment.ms", str(SEGMENT_MS)), ("min.cleanable.dirty.ratio", "0.01"))
    ]
    resource = ConfigResource(
        ResourceType.TOPIC, settings.topics.model_control, incremental_configs=entries
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def _log(settings: Settings) -> list:
    return read_topic(settings, settings.topics.model_control, bool, 20, idle_s=1.0)


def test_model_control_is_compacted_to_the_latest_role_per_model(
    base_settings: Settings, apache_kafka: str, tmp_path: Path
) -> None:
    root = tmp_path / "registry"
    _registry(root)
    # The specs' own partition counts: model-control has one partition, as in production.
    settings = make_test_settings(
        base_settings, apache_kafka, tmp_path, partitions=None, model={"registry_dir": str(root)}
    )
    setup_topics(settings)
    _compact_fast(settings)
    registry = open_registry(settings.model)
    latest: dict[str, int] = {}
    for i in range(CHANGES):
        # fraud's champion flips 2, 1, 2, ...; a second model is announced alongside.
        event = registry.promote("fraud", 2 if i % 2 == 0 else 1, reason="compaction test")
        assert announce(settings, "fraud", event.revision)
        assert announce(settings, "other", i)
        latest = {"fraud": event.revision, "other": i}
        time.sleep(PACE_S)
    # One more key rolls the last announcements out of the active segment into the cleaner's
    # reach (the active segment is never compacted).
    assert announce(settings, "roll", 0)
    latest["roll"] = 0
    assert registry.roles("fraud").champion == 2

    written = 2 * CHANGES + 1
    deadline = time.monotonic() + 180
    records = _log(settings)
    while len(records) > len(latest) and time.monotonic() < deadline:
        records = _log(settings)
    left = [(m.offset(), m.key().decode(), orjson.loads(m.value())["revision"]) for m in records]
    assert len(records) == len(latest), f"{len(records)} of {written} records left: {left}"
    # What a reader from the start (a process starting up) sees: the latest role per model.
    seen = {m.key().decode(): orjson.loads(m.value())["revision"] for m in records}
    assert seen == latest
    assert max(m.offset() for m in records) == written - 1  # offsets kept, records removed

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    events = make_transactions(300)
    try:
        worker.wait_for("assigned [", timeout_s=120)
        produce(settings, settings.topics.transactions, events)
        scores = read_topic(settings, settings.topics.scores, lambda r: len(r) >= len(events))
    finally:
        code = worker.terminate()
    assert code == 0, worker.output()[-3000:]
    versions = {orjson.loads(m.value())["model_version"] for m in scores}
    assert versions == {2}
