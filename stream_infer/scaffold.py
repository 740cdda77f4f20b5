"""``stream-infer init DIR --example fraud|anomaly``: a working project of one's own stream.

Writes into ``DIR`` (which must be absent or empty):

- ``feature_repo/``: the example's Feast repository (events source, stream views, on-demand
  views, the model's feature service), to edit into one's own;
- ``train.py``: the example's training script (training set in, ``model.onnx`` out, with the
  metrics it reaches);
- ``topics/``: the topic specs ``stream-infer topics apply`` creates (renamed by the settings);
- ``.env``: the ``STREAM_INFER_`` settings naming the repository, the topics and the model, for
  one local broker (one replica a topic); ``set -a; . ./.env; set +a`` loads them (nothing
  reads the file by itself);
- ``README.md``: the commands, in order, and what each one does;
- ``.gitignore``: the generated data, the model and the registry.

The examples and the topic specs ship inside the package (``stream_infer/examples`` and
``stream_infer/topic_specs``, package data), so ``init`` works from an installed wheel as from
a checkout.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

from stream_infer.errors import ConfigError

EXAMPLES: Final = ("fraud", "anomaly")
#: The broker port the printed commands use (any free port does).
BROKER_PORT: Final = 9092


@dataclass(frozen=True)
class Example:
    """What differs between the shipped examples: names, topics and the commands' arguments."""

    name: str
    service: str
    model: str
    events_topic: str
    scores_topic: str
    dead_letter_topic: str
    labels_topic: str | None
    generate: str
    training_set: str
    train: str
    register: str
    replay: str
    summary: str


_EXAMPLES: Final[dict[str, Example]] = {
    "anomaly": Example(
        name="anomaly",
        service="anomaly_model_v1",
        model="anomaly",
        events_topic="readings",
        scores_topic="anomaly-scores",
        dead_letter_topic="readings-dlq",
        labels_topic=None,
        generate="loadgen generate --example anomaly --devices 10 --days 3 "
        "--out data/readings.parquet",
        training_set="stream-infer features training-set --repo feature_repo "
        "--events data/readings.parquet --out data/training.parquet",
        train="python train.py --training-set data/training.parquet "
        "--events data/readings.parquet --out model.onnx",
        register="--output scores --score-kind decision --positive low --threshold 0",
        # Any repository's events: the source's fields, key, time order and topic.
        replay="loadgen replay --repo feature_repo --dataset data/readings.parquet",
        summary="device telemetry: per-device 5-minute and 1-hour windows of three sensors, "
        "z-scores and a stuck-sensor flag, an IsolationForest (higher score = more normal)",
    ),
    "fraud": Example(
        name="fraud",
        service="fraud_model_v1",
        model="fraud",
        events_topic="transactions",
        scores_topic="scores",
        dead_letter_topic="transactions-dlq",
        labels_topic="transaction-labels",
        generate="loadgen generate --customers 500 --terminals 1000 --days 60 "
        "--out data/transactions.parquet",
        training_set="stream-infer features training-set --repo feature_repo "
        "--events data/transactions.parquet --labels data/transactions.parquet "
        "--out data/training.parquet",
        train="python train.py --training-set data/training.parquet --out model.onnx",
        register="--score-kind probability --positive high --threshold 0.5",
        # The handbook's replay: the transactions and, 7 days later, their labels.
        replay="loadgen replay --dataset data/transactions.parquet",
        summary="card transactions: customer windows over 1, 7 and 30 days, terminal risk from "
        "7-day-delayed labels (the handbook's 15 inputs), a random forest",
    ),
}


@dataclass(frozen=True)
class Project:
    """What :func:`init_project` wrote: the folder, its files and the commands to run there."""

    root: Path
    files: tuple[Path, ...]
    commands: tuple[str, ...]


def shipped(name: str) -> Path:
    """The package's shipped folder ``name`` (``examples``, ``topic_specs``).

    Raises:
        ConfigError: the package was installed without it.
    """
    root = Path(str(resources.files("stream_infer") / name))
    if not root.is_dir():
        raise ConfigError(f"{name} is missing from this installation ({root})")
    return root


def example(name: str) -> Example:
    """The example called ``name``.

    Raises:
        ConfigError: no such example.
    """
    try:
        return _EXAMPLES[name]
    except KeyError:
        raise ConfigError(f"no example {name!r} (there are: {', '.join(EXAMPLES)})") from None


def commands(ex: Example, target: Path) -> tuple[str, ...]:
    """The shell commands that take the project at ``target`` (as the user named it) from
    nothing to scores."""
    worker = ["stream-infer worker &"]
    if ex.labels_topic is not None:
        worker.append("stream-infer labels &")
    return (
        f"cd {target}",
        "set -a; . ./.env; set +a",
        ex.generate,
        ex.training_set,
        ex.train,
        f"stream-infer model register model.onnx --name {ex.model} "
        f"--feature-service {ex.service} --repo feature_repo {ex.register} "
        "--reference data/training.parquet",
        f"stream-infer broker start --kind tansu --port {BROKER_PORT} &",
        f"export KAFKA_BOOTSTRAP=127.0.0.1:{BROKER_PORT}",
        "stream-infer topics apply",
        *worker,
        ex.replay,
    )


def settings_text(ex: Example, target: Path) -> str:
    """The project's ``.env``: every path absolute, so the commands run from anywhere."""
    lines = [
        f"# stream-infer settings of the {ex.name} example (STREAM_INFER_ prefix, __ nesting).",
        "# Load them into the shell: set -a; . ./.env; set +a",
        f"STREAM_INFER_FEATURES__REPO_DIR={target / 'feature_repo'}",
        f"STREAM_INFER_FEATURES__STATE_DIR={target / 'data' / 'state'}",
        f"STREAM_INFER_MODEL__NAME={ex.model}",
        f"STREAM_INFER_MODEL__REGISTRY_DIR={target / 'registry'}",
        f"STREAM_INFER_TOPICS__TRANSACTIONS={ex.events_topic}",
        f"STREAM_INFER_TOPICS__SCORES={ex.scores_topic}",
        f"STREAM_INFER_TOPICS__SCORES_SHADOW={ex.scores_topic}-shadow",
        f"STREAM_INFER_TOPICS__DEAD_LETTER={ex.dead_letter_topic}",
        f"STREAM_INFER_TOPICS__SPECS_DIR={target / 'topics'}",
        "# One local broker: one replica a topic (raise both on a real cluster).",
        "STREAM_INFER_TOPICS__REPLICATION_FACTOR=1",
        "STREAM_INFER_TOPICS__MIN_INSYNC_REPLICAS=1",
    ]
    if ex.labels_topic is not None:
        lines.append(f"STREAM_INFER_TOPICS__LABELS={ex.labels_topic}")
    return "\n".join(lines) + "\n"


def readme_text(ex: Example, target: Path) -> str:
    """The project's README: what it is and the commands, in order."""
    steps = "\n".join(commands(ex, target))
    return f"""# {target.name}: the stream-infer {ex.name} example

{ex.summary}.

- `feature_repo/`: the Feast repository stream-infer computes: the events' Kafka source (its
  JSON schema, key and event id), the stream views' windowed aggregations, the on-demand
  views, and the feature service `{ex.service}` naming the model's inputs in order. Edit it
  into your own stream; `stream-infer features training-set` and the worker read the same file.
- `train.py`: training set in, `model.onnx` out (its metrics printed).
- `topics/`: the topic specs `stream-infer topics apply` creates, renamed by the settings.
- `.env`: the settings (repository, topics `{ex.events_topic}` -> `{ex.scores_topic}`, model
  `{ex.model}`, one replica a topic for one local broker).

From generated events to scores on `{ex.scores_topic}`:

```bash
{steps}
```

1. generate events (`loadgen generate`); 2. compute every event's features as the stream will
(point in time, the stream's own kernel); 3. train and export to ONNX; 4. register the model
against the feature service (its inputs are checked); 5. a broker, the topics, the worker; 6.
replay the events: the worker scores them with the same definitions.
"""


_GITIGNORE: Final = "data/\nregistry/\nmodel.onnx\nfeature_repo/data/\n__pycache__/\n"


def init_project(target: Path, name: str) -> Project:
    """Write the example ``name``'s project into ``target`` (created if absent).

    Raises:
        ConfigError: no such example, the examples are missing, or ``target`` is a file or a
            folder that is not empty (nothing is overwritten).
    """
    ex = example(name)
    source = shipped("examples") / ex.name
    given, target = target, target.resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not an empty folder: init writes a new project")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        source / "feature_repo",
        target / "feature_repo",
        ignore=shutil.ignore_patterns("data", "__pycache__", "*.pyc"),
    )
    shutil.copy2(source / "train.py", target / "train.py")
    shutil.copytree(
        shipped("topic_specs"), target / "topics", ignore=shutil.ignore_patterns("*.py*")
    )
    (target / "data").mkdir()
    (target / ".env").write_text(settings_text(ex, target))
    (target / "README.md").write_text(readme_text(ex, given))
    (target / ".gitignore").write_text(_GITIGNORE)
    files = tuple(sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file()))
    return Project(root=target, files=files, commands=commands(ex, given))
