"""``stream-infer broker start``: a broker in the foreground, for development and CI.

``--kind apache`` runs one Apache Kafka node (KRaft, Java and Maven needed: the jars come from
Maven Central on first use); ``--kind tansu`` the no-Java embedded broker. The bootstrap is
printed once the broker answers; SIGTERM or Ctrl-C stops it cleanly (Apache Kafka's controlled
shutdown) and the command exits 0.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import click

from stream_infer.errors import FatalError
from stream_infer.kafka.apache import (
    ApacheKafka,
    classpath_cache_file,
    kafka_classpath,
    kafka_version,
)
from stream_infer.kafka.broker import EmbeddedBroker


@click.group()
def broker() -> None:
    """Run a Kafka broker for development: Apache Kafka or the embedded Tansu."""


@broker.command()
@click.option("--kind", type=click.Choice(["apache", "tansu"]), default="apache", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="0: a free port")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="apache: keep the log here across runs (default: a temporary folder, removed at exit)",
)
def start(kind: str, port: int, data_dir: Path | None) -> None:
    """Start a broker on 127.0.0.1, print its bootstrap, run until SIGTERM/SIGINT."""
    stop = threading.Event()

    def handler(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    node: ApacheKafka | EmbeddedBroker
    if kind == "apache":
        node = ApacheKafka(data_dir, port=port or None)
        label = f"Apache Kafka {kafka_version()}"
    else:
        node = EmbeddedBroker("tansu", port=port or None)
        label = "Tansu"
    with node:
        click.echo(f"{label} ready: bootstrap {node.bootstrap} (pid {node.pid})", err=True)
        click.echo(node.bootstrap)
        while not stop.wait(0.5):
            if not node.alive():
                raise FatalError(f"{label} exited by itself:\n{node.tail_log()}")
    click.echo("broker stopped", err=True)


@broker.command()
def fetch() -> None:
    """Resolve Apache Kafka's jars from Maven Central (once; cached) and print where the
    classpath is cached."""
    jars = kafka_classpath().split(os.pathsep)
    click.echo(
        f"Apache Kafka {kafka_version()}: {len(jars)} jars, classpath in {classpath_cache_file()}"
    )
