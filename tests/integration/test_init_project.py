"""``stream-infer init``'s printed path on a real broker.

- with the project's ``.env``, ``stream-infer topics apply`` creates its topics (renamed by the
  settings, one replica) and ``loadgen replay --repo feature_repo`` puts every generated reading
  on the repository's topic, keyed by device, each record one the stream's decoder accepts;
- the whole anomaly path, commands as printed (a smaller dataset; topic and group names made
  unique, a shared broker): the worker (a real process) scores every replayed reading with
  exactly the score the registered ONNX model gives its training-set row, so the faults the
  stream flags are the ones ``train.py`` reported.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
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


def _process(root: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A real process in the project, with its settings."""
    return subprocess.run(
        args, cwd=root, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, **env},
    )  # fmt: skip


def _printed(project_commands: tuple[str, ...]) -> dict[str, str]:
    """The printed commands by their first two words."""
    return {" ".join(c.split()[:2]): c for c in project_commands if " " in c}


def _smaller(command: str, **options: str) -> str:
    args = shlex.split(command)
    for name, value in options.items():
        args[args.index(f"--{name}") + 1] = value
    return shlex.join(args)


def test_the_anomaly_stream_scores_each_reading_as_its_training_set_row(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    project = init_project(tmp_path / "my-stream", "anomaly")
    root = project.root
    lines = (root / ".env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    suffix = uuid.uuid4().hex[:8]
    for name in ("TRANSACTIONS", "SCORES", "SCORES_SHADOW", "DEAD_LETTER", "MODEL_CONTROL"):
        env[f"STREAM_INFER_TOPICS__{name}"] = (
            f"{env.get(f'STREAM_INFER_TOPICS__{name}', name.lower())}-{suffix}"
        )
    env |= {
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "STREAM_INFER_WORKER__GROUP_ID": f"anomaly-{suffix}",
        "STREAM_INFER_METRICS__ENABLED": "false",
    }
    printed = _printed(project.commands)
    _run(root, _smaller(printed["loadgen generate"], devices="4", days="1"), env)
    _run(root, printed["stream-infer features"], env)
    done = _process(root, [sys.executable, *shlex.split(printed["python train.py"])[1:]], env)
    assert done.returncode == 0, done.stdout + done.stderr
    offline = json.loads(done.stdout.strip().splitlines()[-1])
    _run(root, printed["stream-infer model"], env)
    _run(root, printed["stream-infer topics"], env)
    topic = env["STREAM_INFER_TOPICS__TRANSACTIONS"]
    replay = printed["loadgen replay"] + f" --no-progress --transactions-topic {topic}"
    _run(root, replay + " --sent-ids data/sent-ids.npy", env)

    frame = pd.read_parquet(root / "data" / "training.parquet")
    n = len(frame)
    stream_infer = str(Path(sys.executable).parent / "stream-infer")
    worker = _process(root, [stream_infer, "worker", "--max-events", str(n)], env)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    settings = load_settings(kafka={"bootstrap_servers": kafka_bootstrap})
    scores_topic = env["STREAM_INFER_TOPICS__SCORES"]
    records = read_topic(settings, scores_topic, lambda got: len(got) >= n, timeout_s=120)
    scored = [orjson.loads(m.value()) for m in records]
    assert len(scored) == n

    model = next((root / "registry" / "anomaly").rglob("model.onnx"))
    defs = load_definitions(root / "feature_repo")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = frame[list(defs.inputs)].to_numpy(np.float32)
    want = dict(
        zip(
            frame["reading_id"],
            session.run(["scores"], {"input": x})[0].ravel().tolist(),
            strict=True,
        )
    )
    # The score record's event id field is still the handbook's name (item 2 renames it).
    ids = [r.get("reading_id", r.get("transaction_id")) for r in scored]
    assert sorted(ids) == sorted(want)
    assert [r["score"] for r in scored] == [want[i] for i in ids]
    flagged = sum(1 for r in scored if r["score"] < 0)
    assert flagged == offline["flagged"] > 0
