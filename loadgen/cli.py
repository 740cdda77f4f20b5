"""The ``loadgen`` command line: generate, replay, measure, run.

Thin: it builds the settings once (the only place loadgen reads the environment), resolves the
broker and topic names from them unless given as options, and passes plain values down.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from stream_infer.config import Settings, load_settings
from stream_infer.errors import StreamInferError
from stream_infer.kafka.startup import connect

if TYPE_CHECKING:  # the commands import these lazily: `loadgen --help` stays fast
    from loadgen.measure import Measurement
    from loadgen.replay import ReplayOptions
    from loadgen.stream import Dataset

DEFAULT_DATASET = Path("var/loadgen/transactions.parquet")
DEFAULT_READINGS = Path("var/loadgen/readings.parquet")
DEFAULT_OUT = Path("var/loadgen")
DEFAULT_SENT_IDS = DEFAULT_OUT / "sent-ids.npy"


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _client_config(settings: Settings, bootstrap: str | None) -> dict[str, Any]:
    """librdkafka base settings for ``--bootstrap`` or the configured cluster."""
    resolved = bootstrap or settings.resolved_bootstrap()
    if not resolved:
        raise click.UsageError("no broker: pass --bootstrap or set KAFKA_BOOTSTRAP")
    cluster = settings.with_bootstrap(resolved)
    connect(cluster, who="loadgen")  # unreachable, refused or unauthorized: exit, named
    return cluster.kafka.client_config()


@click.group()
@click.option("--log-level", default="WARNING", show_default=True)
@click.pass_context
def cli(ctx: click.Context, log_level: str) -> None:
    """The handbook's transaction simulator, an open-loop replayer and an end-to-end measurer."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = load_settings()


@cli.command()
@click.option(
    "--example",
    type=click.Choice(["fraud", "anomaly"]),
    default="fraud",
    show_default=True,
    help="fraud: the handbook's transactions; anomaly: device telemetry with injected faults",
)
@click.option("--customers", type=click.IntRange(1), default=5000, show_default=True)
@click.option("--terminals", type=click.IntRange(1), default=10000, show_default=True)
@click.option("--devices", type=click.IntRange(1), default=20, show_default=True, help="anomaly")
@click.option("--days", type=click.IntRange(1), default=None, help="default: fraud 183, anomaly 7")
@click.option("--start-date", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--radius", type=click.FloatRange(0), default=5.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--output",
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help=f"default: {DEFAULT_DATASET} (anomaly: {DEFAULT_READINGS})",
)
@click.option("--progress/--no-progress", default=True)
def generate(
    example: str,
    customers: int,
    terminals: int,
    devices: int,
    days: int | None,
    start_date: datetime | None,
    radius: float,
    seed: int,
    output: Path | None,
    progress: bool,
) -> None:
    """Simulate labelled transactions (the fraud handbook's simulator), or device telemetry
    with injected faults (``--example anomaly``), into a parquet file."""
    import time

    if example == "anomaly":
        from loadgen.telemetry import write_telemetry

        click.echo(write_telemetry(devices, days, start_date, seed, output or DEFAULT_READINGS))
        return

    from loadgen.simulator import SimulationConfig, summary, write_parquet
    from loadgen.simulator import generate as simulate

    start = (start_date or datetime(2018, 4, 1)).date()
    output = output or DEFAULT_DATASET
    config = SimulationConfig(customers, terminals, days or 183, start, radius, seed)
    began = time.monotonic()
    frame = simulate(config, progress=progress)
    write_parquet(frame, output)
    elapsed = time.monotonic() - began
    facts = summary(frame)
    click.echo(
        f"{facts.transactions:,} transactions, {facts.frauds:,} frauds "
        f"({facts.fraud_rate:.3%}) in {elapsed:.1f}s -> {output}"
    )
    for scenario, frauds in facts.scenario_frauds.items():
        click.echo(
            f"  scenario {scenario}: {frauds:,} frauds ({facts.scenario_share(scenario):.1%})"
        )


def _pacing_options(func: Any) -> Any:
    """Options shared by ``replay`` and ``run``."""
    options = [
        click.option(
            "--dataset",
            type=click.Path(exists=True, path_type=Path),
            default=None,
            help="parquet from `loadgen generate` (default: simulate the defaults)",
        ),
        click.option("--seed", type=int, default=0, help="seed when simulating"),
        click.option("--bootstrap", default=None, help="default: the configured cluster"),
        click.option("--transactions-topic", default=None, help="default: topics.transactions"),
        click.option("--labels-topic", default=None, help="default: topics.labels"),
        click.option(
            "--rate",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="transactions/s, open loop (default: as fast as possible)",
        ),
        click.option(
            "--time-scale",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="replay event time this many times faster than real time",
        ),
        click.option(
            "--duration",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="stop sending after this many seconds",
        ),
        click.option(
            "--shift-to-now/--keep-timestamps",
            default=False,
            help="restamp events so the first one is now",
        ),
        click.option(
            "--label-delay-days", type=click.FloatRange(0), default=7.0, show_default=True
        ),
        click.option(
            "--labels",
            type=click.Choice(["all", "inline", "none"]),
            default="all",
            show_default=True,
            help="all labels, only those due before the last transaction, or none",
        ),
        click.option("--progress/--no-progress", default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _dataset(path: Path | None, seed: int, progress: bool) -> Dataset:
    import pandas as pd

    from loadgen.simulator import SimulationConfig, generate
    from loadgen.stream import Dataset

    frame = (
        pd.read_parquet(path) if path else generate(SimulationConfig(seed=seed), progress=progress)
    )
    return Dataset.from_frame(frame)


def _replay_options(settings: Settings, kw: dict[str, Any], count: int | None) -> ReplayOptions:
    """Replay options from the shared CLI options.

    Raises:
        click.UsageError: the options contradict each other (e.g. a rate and a time scale).
    """
    from loadgen.replay import ReplayOptions

    try:
        return ReplayOptions(
            transactions_topic=kw["transactions_topic"] or settings.topics.transactions,
            labels_topic=kw["labels_topic"] or settings.topics.labels,
            rate=kw["rate"],
            time_scale=kw["time_scale"],
            count=count,
            duration_s=kw["duration"],
            shift_to_now=kw["shift_to_now"],
            label_delay_s=kw["label_delay_days"] * 86_400,
            labels=kw["labels"],
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


@cli.command()
@_pacing_options
@click.option("--count", type=click.IntRange(0), default=None, help="first N transactions only")
@click.option(
    "--sent-ids",
    type=click.Path(path_type=Path),
    default=DEFAULT_SENT_IDS,
    show_default=True,
    help="where to write the sent transaction ids (.npy) for `loadgen measure --sent-ids`",
)
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="replay --dataset as this Feast repository's events (its source's fields, key, time "
    "and topic; no labels) instead of the handbook's transactions",
)
@click.pass_context
def replay(
    ctx: click.Context, /, count: int | None, sent_ids: Path, repo: Path | None, **kw: Any
) -> None:
    """Publish a dataset's transactions and delayed labels on an open-loop schedule (with
    ``--repo``: any parquet of that repository's events)."""
    import orjson

    from loadgen.replay import Replayable
    from loadgen.replay import replay as send

    settings = _settings(ctx)
    data: Replayable | None = None
    if repo is not None:
        from loadgen.source_events import load_source_events

        if kw["dataset"] is None:
            raise click.UsageError("--repo replays a --dataset of its events: give one")
        events = load_source_events(repo, kw["dataset"])
        topic = kw["transactions_topic"] or events.source.topic
        kw = {**kw, "transactions_topic": topic, "labels": "none"}
        data = events
    options = _replay_options(settings, kw, count)  # a usage error before any I/O
    config = _client_config(settings, kw["bootstrap"])
    result = send(
        data or _dataset(kw["dataset"], kw["seed"], kw["progress"]),
        options,
        config,
        progress=kw["progress"],
    )
    sent_ids.parent.mkdir(parents=True, exist_ok=True)
    np.save(sent_ids, result.sent_ids)
    click.echo(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2).decode())
    if result.delivery_errors:
        sys.exit(1)


def _outputs(out_dir: Path) -> tuple[Path, Path]:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return out_dir / f"report-{stamp}.json", out_dir / f"latency-{stamp}.png"


@cli.command()
@click.option("--bootstrap", default=None, help="default: the configured cluster")
@click.option("--scores-topic", default=None, help="default: topics.scores")
@click.option(
    "--sent-ids",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help=".npy from `loadgen replay --sent-ids` (default: no accounting)",
)
@click.option(
    "--since",
    type=float,
    default=None,
    help="skip scores intended before this epoch time (seconds)",
)
@click.option(
    "--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=15.0, show_default=True
)
@click.option("--max-wait", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--out-dir", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True)
@click.pass_context
def measure(
    ctx: click.Context,
    bootstrap: str | None,
    scores_topic: str | None,
    sent_ids: Path | None,
    since: float | None,
    idle_timeout: float,
    max_wait: float | None,
    out_dir: Path,
) -> None:
    """Consume scores: end-to-end latency, throughput, missing and duplicated ids."""
    from loadgen.measure import MeasureOptions
    from loadgen.measure import measure as collect_scores

    settings = _settings(ctx)
    options = MeasureOptions(
        topic=scores_topic or settings.topics.scores,
        idle_timeout_s=idle_timeout,
        max_wait_s=max_wait,
        since_wall_ns=None if since is None else int(since * 1e9),
    )
    expected = None if sent_ids is None else np.load(sent_ids)
    result = collect_scores(_client_config(settings, bootstrap), options, expected)
    _write(result, None, {"command": "measure", "topic": options.topic}, out_dir, None)


@cli.command("run")
@_pacing_options
@click.option("--events", type=click.IntRange(1), default=None, help="transactions to send")
@click.option("--scores-topic", default=None, help="default: topics.scores")
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=15.0,
    show_default=True,
    help="give up on missing scores after this long",
)
@click.option("--out-dir", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True)
@click.pass_context
def run_command(
    ctx: click.Context,
    /,
    events: int | None,
    scores_topic: str | None,
    idle_timeout: float,
    out_dir: Path,
    **kw: Any,
) -> None:
    """Replay and measure in one go: `loadgen run --rate R --events N`."""
    from loadgen.measure import MeasureOptions
    from loadgen.run import run

    settings = _settings(ctx)
    options = _replay_options(settings, kw, events)  # a usage error before any I/O
    config = _client_config(settings, kw["bootstrap"])
    measure_options = MeasureOptions(
        topic=scores_topic or settings.topics.scores, idle_timeout_s=idle_timeout
    )
    data = _dataset(kw["dataset"], kw["seed"], kw["progress"])
    result = run(data, options, measure_options, config, progress=kw["progress"])
    meta = {
        "command": "run",
        "topic": measure_options.topic,
        "events": events,
        "rate": kw["rate"],
        "time_scale": kw["time_scale"],
    }
    _write(result.measurement, result.replay.as_dict(), meta, out_dir, kw["rate"])
    if result.replay.delivery_errors or (
        result.measurement.accounting is not None and result.measurement.accounting.missing
    ):
        sys.exit(1)


def _write(
    measurement: Measurement,
    replay: dict[str, Any] | None,
    meta: dict[str, Any],
    out_dir: Path,
    target_rate: float | None,
) -> None:
    from loadgen.report import build_report, write_chart, write_json

    report = build_report(measurement, replay, meta)
    json_path, png_path = _outputs(out_dir)
    write_json(report, json_path)
    write_chart(measurement, png_path, target_rate)
    lat = report["latency_ms"]
    acc = report["accounting"]
    click.echo(
        f"latency ms: p50={lat['p50']} p90={lat['p90']} p99={lat['p99']} "
        f"p99.9={lat['p99.9']} max={lat['max']} (n={lat['count']})"
    )
    if acc is not None:
        click.echo(
            f"sent={acc['sent']} scored={acc['scored']} missing={acc['missing']} "
            f"duplicated={acc['duplicated']} unexpected={acc['unexpected']}"
        )
    click.echo(f"stopped by {report['stopped_by']}; report {json_path}, chart {png_path}")


def main() -> None:
    """Entry point (console script ``loadgen``)."""
    try:
        cli(standalone_mode=True)
    except (StreamInferError, ValueError, TimeoutError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
