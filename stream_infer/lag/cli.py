"""``stream-infer lag``: consumer-group lag from the broker (works with every worker down),
and ``stream-infer lag serve``: the long-running exporter and status page."""

from __future__ import annotations

import time
from collections.abc import Sequence

import click

from stream_infer.config import Settings
from stream_infer.kafka.startup import connect
from stream_infer.lag.offsets import BrokerOffsets, EndOffsetMethod, default_groups
from stream_infer.lag.status import StatusTracker
from stream_infer.lag.view import LagView, observe

_METHOD = click.Choice(["fetch", "listoffsets"])
_METHOD_HELP = (
    "how log-end offsets are read: fetch (high watermark of a fetch; right on Tansu) or "
    "listoffsets (ListOffsets; default: lag.end_offsets)"
)


def _cluster_settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    bootstrap = settings.resolved_bootstrap()
    if not bootstrap:
        raise click.UsageError("set KAFKA_BOOTSTRAP or STREAM_INFER_KAFKA__BOOTSTRAP_SERVERS")
    cluster = settings.with_bootstrap(bootstrap)
    connect(cluster, who="lag")  # unreachable, refused or unauthorized: exit, named
    return cluster


def _source(
    settings: Settings, groups: Sequence[str], method: str | None
) -> tuple[BrokerOffsets, list[str]]:
    known = default_groups(settings)
    chosen = list(groups) or list(known)
    wanted = method or settings.lag.end_offsets
    end: EndOffsetMethod = "listoffsets" if wanted == "listoffsets" else "fetch"
    return BrokerOffsets(settings, end, {g: known[g] for g in chosen if g in known}), chosen


@click.group("lag", invoke_without_command=True)
@click.option("--group", "groups", multiple=True, help="default: scoring and label groups")
@click.option("--json", "as_json", is_flag=True, help="a JSON list of rows")
@click.option("--watch", is_flag=True, help="refresh live until Ctrl-C")
@click.option("--end-offsets", "method", type=_METHOD, default=None, help=_METHOD_HELP)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=None,
    help="samples taken for the status (default: lag.samples, 3), lag.sample_interval_s apart",
)
@click.pass_context
def lag(
    ctx: click.Context,
    groups: tuple[str, ...],
    as_json: bool,
    watch: bool,
    method: str | None,
    samples: int | None,
) -> None:
    """Committed and log-end offsets, lag, lag seconds and Burrow-like status per partition.

    The status of a one-shot run comes from its few samples: OK, STOP (lag, no consumer,
    offset not moving), STALL (a consumer, offset not moving), REWIND, WARN (lag not
    shrinking); UNKNOWN with --samples 1. See stream_infer/lag/status.py for the rules.
    """
    if ctx.invoked_subcommand is not None:
        return
    from stream_infer.lag import report

    settings = _cluster_settings(ctx)
    source, chosen = _source(settings, groups, method)
    tracker = StatusTracker(settings.lag.window)
    if watch:
        _watch(source, chosen, tracker, settings.lag.sample_interval_s)
        return
    view = _sample(source, chosen, tracker, samples or settings.lag.samples, settings)
    click.echo(report.as_json(view) if as_json else report.as_text(view))


def _sample(
    source: BrokerOffsets,
    groups: Sequence[str],
    tracker: StatusTracker,
    samples: int,
    settings: Settings,
) -> LagView:
    view: LagView | None = None
    next_at = time.monotonic()
    for i in range(samples):
        if i:
            next_at += settings.lag.sample_interval_s
            time.sleep(max(0.0, next_at - time.monotonic()))
        view = observe(source.sample(groups), tracker, time.monotonic())
    assert view is not None  # samples >= 1
    return view


def _watch(
    source: BrokerOffsets, groups: Sequence[str], tracker: StatusTracker, interval_s: float
) -> None:
    from rich.live import Live

    from stream_infer.errors import RetryableError
    from stream_infer.lag.report import as_rich

    view: LagView | None = None
    with Live(as_rich(None, None), refresh_per_second=4, screen=False) as live:
        next_at = time.monotonic()
        try:
            while True:
                error = None
                try:
                    view = observe(source.sample(groups), tracker, time.monotonic())
                except RetryableError as exc:
                    error = str(exc)
                live.update(as_rich(view, error))
                next_at += interval_s
                time.sleep(max(0.0, next_at - time.monotonic()))
        except KeyboardInterrupt:
            return


@lag.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, required=True, help="0 = a free port (logged)")
@click.option("--interval", type=float, default=None, help="seconds between samples")
@click.option("--group", "groups", multiple=True, help="default: scoring and label groups")
@click.option("--end-offsets", "method", type=_METHOD, default=None, help=_METHOD_HELP)
@click.option("--scrape", "scrape_urls", multiple=True, help="a worker's /metrics URL")
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    interval: float | None,
    groups: tuple[str, ...],
    method: str | None,
    scrape_urls: tuple[str, ...],
) -> None:
    """The exporter: kafka-lag-exporter's metrics on /metrics and the status page on
    /status, sampling every --interval seconds (default lag.interval_s) until SIGTERM."""
    from stream_infer.lag.server import LagServer
    from stream_infer.runtime import install_stop_signals

    settings = _cluster_settings(ctx)
    source, chosen = _source(settings, groups, method)
    every = interval if interval is not None else settings.lag.interval_s
    if every <= 0:
        raise click.BadParameter("must be > 0", param_hint="--interval")
    with LagServer(settings, source, chosen, host, port, every, scrape_urls) as server:
        install_stop_signals(server.stop)
        click.echo(
            f"lag exporter listening on http://{host}:{server.port} "
            f"(/metrics, /status; log-end offsets by {source.method})",
        )
        server.wait()
