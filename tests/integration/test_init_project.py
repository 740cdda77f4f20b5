"""``stream-infer init``'s printed path on a real broker, up to the worker: with the project's
``.env``, ``stream-infer topics apply`` creates its topics (renamed by the settings, one replica)
and ``loadgen replay --repo feature_repo`` puts every generated reading on the repository's
topic, keyed by device, each record one the stream's decoder accepts."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pandas as pd
import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from loadgen.cli import cli as loadgen_cli
from stream_infer.cli import cli
from stream_infer.config import load_settings
from stream_infer.scaffold import init_project
from stream_infer.streamdef.decoders import build_decoder
from stream_infer.streamdef.feast_reader import load_definitions
from tests.integration.kafka_io import read_topic

pytestmark = pytest.mark.integration


@contextmanager
def _inside(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _run(root: Path, command: str, env: dict[str, str]) -> str:
    program, *args = shlex.split(command)
    group = {"stream-infer": cli, "loadgen": loadgen_cli}[program]
    with _inside(root):
        result = CliRunner().invoke(group, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_printed_topics_and_replay_steps_reach_the_broker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    project = init_project(tmp_path / "my-stream", "anomaly")
    root = project.root
    lines = (root / ".env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    env["KAFKA_BOOTSTRAP"] = kafka_bootstrap
    by_program = {c.split()[0] + " " + c.split()[1]: c for c in project.commands if " " in c}

    generate = shlex.split(by_program["loadgen generate"])
    generate[generate.index("--devices") + 1] = "3"  # a smaller dataset: test time
    generate[generate.index("--days") + 1] = "1"
    _run(root, shlex.join(generate), env)
    output = _run(root, by_program["stream-infer topics"], env)
    for topic in ("readings", "anomaly-scores", "readings-dlq"):
        assert f" {topic} (" in output, output
    replay = by_program["loadgen replay"] + " --no-progress --sent-ids data/sent-ids.npy"
    summary = orjson.loads(_run(root, replay, env))

    readings = pd.read_parquet(root / "data" / "readings.parquet")
    assert summary["transactions_sent"] == len(readings) and summary["delivery_errors"] == 0
    settings = load_settings(kafka={"bootstrap_servers": kafka_bootstrap})
    records = read_topic(settings, "readings", lambda got: len(got) >= len(readings))
    source = load_definitions(root / "feature_repo").source
    decoded = build_decoder(source).decode_batch([m.value() for m in records])
    assert decoded.refused == []
    ids = decoded.columns["reading_id"].tolist()
    assert set(ids) == set(readings["reading_id"].astype(str))
    keys = {m.key().decode() for m in records}
    assert keys == set(readings["device_id"])
    by_id = dict(zip(readings["reading_id"].astype(str), readings["device_id"], strict=True))
    assert all(by_id[i] == d for i, d in zip(ids, decoded.columns["device_id"], strict=True))
    assert all(m.key().decode() == by_id[i] for m, i in zip(records, ids, strict=True))

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    partitions = admin.list_topics(timeout=10).topics["readings"].partitions
    assert len(partitions) == 6  # topics/transactions.toml, renamed
