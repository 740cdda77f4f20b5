"""The ``stream-infer`` command line: thin; it builds the settings once and calls the modules."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any

import click

from stream_infer.cli_broker import broker as broker_commands
from stream_infer.cli_model import model as model_commands
from stream_infer.cli_register import register as register_command
from stream_infer.config import Settings, load_settings
from stream_infer.errors import StreamInferError
from stream_infer.lag.cli import lag as lag_commands


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


_EMBEDDED = click.option(
    "--embedded",
    is_flag=True,
    help="with no bootstrap set, start a throwaway local broker (kafka.embedded_broker); "
    "without it, a missing bootstrap is an error",
)


@click.group()
@click.option("--log-level", default="INFO", show_default=True)
@click.pass_context
def cli(ctx: click.Context, log_level: str) -> None:
    """Streaming inference over Kafka: shared features, micro-batched ONNX Runtime."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = load_settings()


cli.add_command(model_commands)
model_commands.add_command(register_command)
cli.add_command(broker_commands)
cli.add_command(lag_commands)


@cli.group()
def topics() -> None:
    """Topics as code (topics/*.toml)."""


@topics.command("apply")
@click.pass_context
def topics_apply(ctx: click.Context) -> None:
    """Create missing topics and check existing ones (idempotent)."""
    from stream_infer.kafka.startup import connect
    from stream_infer.runtime import apply_topics

    settings = _settings(ctx)
    if not settings.resolved_bootstrap():
        raise click.UsageError("set KAFKA_BOOTSTRAP or STREAM_INFER_KAFKA__BOOTSTRAP_SERVERS")
    settings = settings.with_bootstrap(settings.resolved_bootstrap() or "")
    connect(settings, who="topics apply")
    for result in apply_topics(settings):
        click.echo(
            f"{result.action:8} {result.name} ({result.partitions} partitions) {result.detail}"
        )


@cli.group()
def features() -> None:
    """The Feast repository (features/) and the offline feature build."""


@features.command("apply")
@click.pass_context
def features_apply(ctx: click.Context) -> None:
    """`feast apply` on the repository, against Redis when configured, else SQLite."""
    from stream_infer.features.feast_repo import apply

    settings = _settings(ctx)
    redis = settings.redis if settings.redis.enabled else None
    store = apply(settings.features.feast_repo_dir, redis)
    views = [v.name for v in store.list_feature_views()]
    click.echo(f"applied project {store.project}: views {views}")


@features.command("build")
@click.option("--transactions", type=click.Path(path_type=Path, exists=True), required=True)
@click.option(
    "--labels",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="parquet with transaction_id, tx_fraud (default: tx_fraud in --transactions)",
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="also write all 15")
@click.pass_context
def features_build(
    ctx: click.Context, transactions: Path, labels: Path | None, out: Path | None
) -> None:
    """Compute every transaction's features in batch and write Feast's offline sources."""
    import pandas as pd

    from stream_infer.features.feast_repo import write_offline_sources
    from stream_infer.features.serving_frame import feature_frame
    from stream_infer.streamdef.feast_reader import load_definitions

    settings = _settings(ctx)
    raw = pd.read_parquet(transactions)
    label_frame = pd.read_parquet(labels) if labels is not None else None
    defs = load_definitions(settings.features.repo_dir)
    frame = feature_frame(defs, raw, label_frame)
    paths = write_offline_sources(frame, settings.features.feast_repo_dir)
    if out is not None:
        frame.to_parquet(out, index=False)
    click.echo(f"{len(frame):,} rows -> {', '.join(str(p) for p in paths)}")


@features.command("training-set")
@click.option(
    "--repo",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="the Feast repository (default: features.repo_dir)",
)
@click.option("--service", default=None, help="the feature service (default: the only one)")
@click.option("--events", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--labels", type=click.Path(path_type=Path, exists=True), default=None)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.pass_context
def features_training_set(
    ctx: click.Context,
    repo: Path | None,
    service: str | None,
    events: Path,
    labels: Path | None,
    out: Path,
) -> None:
    """A point-in-time-correct training set from the repository's own definitions."""
    from stream_infer.streamdef.training import write_training_set

    repo_dir = repo if repo is not None else _settings(ctx).features.repo_dir
    rows = write_training_set(repo_dir, events, out, labels, service)
    click.echo(f"{rows:,} rows -> {out}")


@cli.command()
@click.option("--max-events", type=int, default=None, help="exit after this many events")
@click.option(
    "--processes", type=click.IntRange(1, 64), default=1, help="worker processes in the group"
)
@_EMBEDDED
@click.pass_context
def worker(ctx: click.Context, max_events: int | None, processes: int, embedded: bool) -> None:
    """Run a scoring worker until SIGTERM/SIGINT (then drain and commit)."""
    from stream_infer.kafka.startup import connect
    from stream_infer.runtime import build_worker, install_stop_signals, kafka_cluster

    if processes > 1:
        from stream_infer.scale import run_processes

        with kafka_cluster(_settings(ctx), embedded=embedded) as settings:
            extra = ["--max-events", str(max_events)] if max_events is not None else []
            ctx.exit(run_processes(settings, processes, extra))
    with kafka_cluster(_settings(ctx), embedded=embedded) as settings:
        group = settings.worker.group_id
        connect(settings, [settings.topics.transactions], group, who="worker")
        # Reading the definitions imports Feast (seconds): a SIGTERM meanwhile stops the
        # worker before its first batch instead of killing it.
        early = threading.Event()
        install_stop_signals(early.set)
        w = build_worker(settings)
        install_stop_signals(w.stop)
        if early.is_set():
            w.stop()
        stats = w.run(max_events=max_events)
        click.echo(
            f"consumed={stats.consumed} scored={stats.scored} dead_lettered={stats.dead_lettered}"
        )


@cli.command()
@click.option("--quick", is_flag=True, help="small generated dataset, seconds not minutes")
@click.option(
    "--transactions", type=click.Path(path_type=Path), default=None, help="parquet from loadgen"
)
@click.option(
    "--model", "kind", type=click.Choice(["logreg", "tree", "forest", "mlp"]), default="logreg"
)
@click.option("--train-start-day", type=int, default=None, help="default: after 30-day warm-up")
@click.option("--via-feast/--direct", default=False, help="build the set with Feast (slower)")
@click.option("--seed", type=int, default=0)
@click.option("--promote", is_flag=True, help="make it champion (default: a candidate)")
@click.option("--reason", default="", help="why, for the history (with --promote)")
@click.pass_context
def train(
    ctx: click.Context,
    quick: bool,
    transactions: Path | None,
    kind: Any,
    train_start_day: int | None,
    via_feast: bool,
    seed: int,
    promote: bool,
    reason: str,
) -> None:
    """Train on generated (or given) transactions, export ONNX, register a candidate (the
    champion with --promote, or when the model has none yet)."""
    from stream_infer.model.registry import open_registry
    from stream_infer.training.workflow import run_training

    settings = _settings(ctx)
    result = run_training(
        settings,
        quick=quick,
        transactions=transactions,
        kind=kind,
        train_start_day=train_start_day,
        via_feast=via_feast,
        seed=seed,
        promote=promote,
        reason=reason,
        echo=click.echo,
    )
    m = result.version.manifest
    champion = open_registry(settings.model).roles(m.name).champion
    role = "champion" if champion == m.version else f"candidate (champion stays v{champion})"
    click.echo(
        f"registered {m.name} v{m.version} ({m.semver}) as {role} sha256={m.sha256[:12]} "
        f"metrics={m.metrics}"
    )


@cli.command()
@click.option("--events", type=int, default=None, help="exit once N events are scored")
@click.option("--rate", type=float, default=None, help="events/s (default: as fast as possible)")
@click.option("--invalid", type=int, default=5, help="malformed events to mix in")
@click.pass_context
def demo(ctx: click.Context, events: int | None, rate: float | None, invalid: int) -> None:
    """Broker, topics, model, worker, replay, live progress, summary: the whole path."""
    from stream_infer.demo import run_demo

    run_demo(_settings(ctx), events=events, rate=rate, invalid=invalid)


@cli.command()
@click.option("--host", default=None, help="default: serve.host")
@click.option("--port", type=int, default=None, help="default: serve.port")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="sidecar processes sharing the ports, each with its own batcher (default: serve.workers)",
)
@_EMBEDDED
@click.pass_context
def serve(
    ctx: click.Context, host: str | None, port: int | None, workers: int | None, embedded: bool
) -> None:
    """The sidecar (HTTP, and gRPC on serve.grpc_port): the stream's model and features."""
    from stream_infer.kafka.startup import connect
    from stream_infer.runtime import kafka_cluster

    settings = _settings(ctx)
    updates = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if updates:
        settings = settings.model_copy(update={"serve": settings.serve.model_copy(update=updates)})
    with kafka_cluster(settings, embedded=embedded) as settings:
        connect(settings, [settings.topics.model_control], who="serve")
        workers = workers or settings.serve.workers
        if workers == 1:
            from stream_infer.sidecar.app import run

            run(settings)
            return
        from stream_infer.sidecar.workers import run_workers

        sys.exit(run_workers(settings, workers))


@cli.command()
@_EMBEDDED
@click.pass_context
def labels(ctx: click.Context, embedded: bool) -> None:
    """The label processor (faust): delayed labels -> daily-view rows."""
    from stream_infer.kafka.startup import connect
    from stream_infer.labels.app import run
    from stream_infer.runtime import kafka_cluster

    with kafka_cluster(_settings(ctx), embedded=embedded) as settings:
        group = f"{settings.worker.group_id}-labels"
        connect(settings, [settings.topics.labels], group, who="labels")
        run(settings)


@cli.command("init")
@click.argument("target", type=click.Path(path_type=Path, file_okay=False))
@click.option("--example", type=click.Choice(["fraud", "anomaly"]), default="anomaly")
def init(target: Path, example: str) -> None:
    """A new project in TARGET: the example's Feast repository, training script, settings and
    README; prints the commands that take it to scores on the output topic."""
    from stream_infer.scaffold import init_project

    project = init_project(target, example)
    click.echo(f"wrote the {example} example to {project.root}:")
    for path in project.files:
        click.echo(f"  {path}")
    click.echo("\nthen run:\n")
    for command in project.commands:
        click.echo(f"  {command}")


def main() -> None:
    """Entry point: errors we raise on purpose print one line, not a traceback."""
    try:
        cli(standalone_mode=True)
    except StreamInferError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
