"""`stream-infer model compare` on the real broker: the CLI hook reaches the comparison."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from stream_infer.cli import cli
from stream_infer.config import Settings

from .conftest import make_test_settings
from .kafka_io import produce, setup_topics


def test_model_compare_reports_each_version(
    kafka_bootstrap: str, base_settings: Settings, tmp_path: Path
) -> None:
    settings = make_test_settings(base_settings, kafka_bootstrap, tmp_path, partitions=1)
    setup_topics(settings)
    scores, labels = [], []
    for i in range(60):
        version = 2 if i % 4 == 0 else 1
        scores.append(
            {
                "transaction_id": f"tx-{i}",
                "customer_id": f"c{i}",
                "score": 0.9 if i % 5 == 0 else 0.1,
                "model_name": "fraud",
                "model_version": version,
                "model_role": "challenger" if version == 2 else "champion",
            }
        )
        labels.append(
            {"transaction_id": f"tx-{i}", "terminal_id": "t", "tx_fraud": int(i % 5 == 0)}
        )
    produce(settings, settings.topics.scores, scores)
    produce(settings, settings.topics.labels, labels, key_field="terminal_id")
    t = settings.topics
    env = {
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "STREAM_INFER_TOPICS__SCORES": t.scores,
        "STREAM_INFER_TOPICS__SCORES_SHADOW": t.scores_shadow,
        "STREAM_INFER_TOPICS__LABELS": t.labels,
        "STREAM_INFER_MODEL__REGISTRY_DIR": str(tmp_path / "registry"),
    }
    result = CliRunner().invoke(cli, ["model", "compare", "fraud", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    events = {v["version"]: v["events"] for v in report["versions"]}
    assert events == {1: 45, 2: 15} and report["champion_version"] == 1
