"""Write a measurement down: a JSON report and a PNG chart (matplotlib, Agg backend).

The chart has two panels sharing the time axis (seconds since the run's origin): end-to-end
latency per second (p50, p99, max; log scale) and scores received per second, with the
replayer's target rate drawn when there was one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from loadgen.measure import Measurement


def build_report(
    measurement: Measurement,
    replay: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report: ``meta`` (what was run), ``replay`` (what was sent), then the measurement."""
    report: dict[str, Any] = {"meta": dict(meta or {})}
    if replay is not None:
        report["replay"] = dict(replay)
    report.update(measurement.summary())
    return report


def write_json(report: Mapping[str, Any], path: Path) -> Path:
    """Write ``report`` as indented JSON (parents created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def write_chart(
    measurement: Measurement, path: Path, target_rate: float | None = None, title: str = ""
) -> Path:
    """Draw latency percentiles and throughput over time to a PNG (parents created)."""
    import matplotlib

    matplotlib.use("Agg")  # no display here; must precede pyplot's import
    import matplotlib.pyplot as plt

    series = measurement.series
    fig, (ax_lat, ax_tp) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    try:
        if len(series.second):
            x = series.second
            full = series.count > 0
            ax_lat.plot(x[full], series.p50[full], label="p50", lw=1.2)
            ax_lat.plot(x[full], series.p99[full], label="p99", lw=1.2)
            ax_lat.plot(x[full], series.max[full], label="max", lw=0.8, alpha=0.7)
            if bool(np.all(series.p50[full] > 0)):
                ax_lat.set_yscale("log")
            ax_tp.step(x, series.count, where="post", label="scores received/s")
            if target_rate:
                ax_tp.axhline(target_rate, ls="--", color="grey", label=f"target {target_rate:g}/s")
        else:
            ax_lat.text(0.5, 0.5, "no scores received", ha="center", transform=ax_lat.transAxes)
        ax_lat.set_ylabel("end-to-end latency (ms)")
        ax_lat.grid(True, which="both", alpha=0.3)
        ax_tp.set_ylabel("scores / s")
        ax_tp.set_xlabel("seconds since start")
        ax_tp.grid(True, alpha=0.3)
        if len(series.second):  # an empty legend warns
            ax_lat.legend(loc="upper left")
            ax_tp.legend(loc="upper left")
        fig.suptitle(title or "loadgen: intended send -> score received")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
