"""The compiled stream kernel, the compiled fraud example's feature step, and two ways of
keeping min/max tables.

``python -m bench.streamdef_kernel [--events N] [--passes P]``

loadgen's simulator (300 customers over 183 days: about 107k transactions, the first ``N``
kept), in batches of 512, columns built beforehand as a decoder builds them; every figure is
the median over ``P`` passes, each from empty state, in µs per event:

- ``compiled customer windows``: :class:`~stream_infer.streamdef.kernel.StreamKernel` on the
  fraud example's 6 stream features, read from examples/fraud/feature_repo (count and mean of
  tx_amount over 1, 7, 30 days);
- ``compiled whole fraud example``: the kernel, the daily rows (no partials published) and the
  two on-demand views;
- min/max: ``min`` and ``max`` of tx_amount over 1 and 30 days with the tables filled at the
  new entries only (``append``) or rebuilt over each touched segment (``segment``), on the
  customers and on 20 hot keys (about 5,000 entries in a 30-day window).

A benchmark, not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from stream_infer.streamdef.daily import DailyRows
from stream_infer.streamdef.kernel import StreamKernel
from stream_infer.streamdef.ondemand import apply_on_demand
from stream_infer.streamdef.spec import (
    SECONDS_PER_DAY,
    SEQ_COLUMN,
    AggSpec,
    StreamDefinitions,
    StreamView,
)

BATCH = 512
#: Pruned as the worker's entity state prunes by default: a day past the longest window.
MARGIN_S = SECONDS_PER_DAY
Columns = dict[str, npt.NDArray[Any]]


def simulated(events: int) -> pd.DataFrame:
    from loadgen.simulator import SimulationConfig, generate

    frame = generate(SimulationConfig(n_customers=300, n_terminals=1000, seed=0), progress=False)
    return frame.iloc[:events].reset_index(drop=True)


def event_columns(frame: pd.DataFrame) -> Columns:
    def strings(col: str) -> npt.NDArray[np.object_]:
        out = np.empty(len(frame), dtype=object)
        out[:] = [str(v) for v in frame[col]]
        return out

    return {
        "transaction_id": strings("transaction_id"),
        "tx_datetime": np.asarray(
            frame["tx_datetime"].astype("int64") // 1_000_000_000, dtype=np.int64
        ),
        "customer_id": strings("customer_id"),
        "terminal_id": strings("terminal_id"),
        "tx_amount": np.asarray(frame["tx_amount"], dtype=np.float64),
        SEQ_COLUMN: np.arange(len(frame), dtype=np.int64),
    }


def batches(cols: Columns) -> list[Columns]:
    n = len(cols["transaction_id"])
    return [{k: v[i : i + BATCH] for k, v in cols.items()} for i in range(0, n, BATCH)]


def median_us(passes: int, n: int, make: Callable[[], Callable[[], object]]) -> float:
    """Median µs per event of ``make()()`` over ``passes`` (``make`` builds fresh state)."""
    runs = []
    for _ in range(passes):
        run = make()
        start = time.perf_counter()
        run()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def fraud_definitions() -> StreamDefinitions:
    """The fraud example, read from its Feast repository (examples/fraud/feature_repo)."""
    from stream_infer.streamdef.feast_reader import load_definitions

    return load_definitions(Path(__file__).resolve().parents[1] / "examples/fraud/feature_repo")


def windowed(fraud: StreamDefinitions, aggs: list[AggSpec]) -> StreamDefinitions:
    view = StreamView("v", fraud.source.name, fraud.source.key_field, tuple(aggs))
    return StreamDefinitions(fraud.source, None, (view,), (), (), "svc", ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    cols = event_columns(simulated(args.events))
    n = len(cols["transaction_id"])
    parts = batches(cols)
    fraud = fraud_definitions()

    def compiled(defs: StreamDefinitions, refresh: str = "append") -> Callable[[], object]:
        kernel = StreamKernel(defs, margin_s=MARGIN_S, refresh=refresh)
        return lambda: [kernel.evaluate(b) for b in parts]

    def compiled_whole() -> Callable[[], object]:
        kernel = StreamKernel(fraud, margin_s=MARGIN_S)
        daily = DailyRows(fraud)

        def run() -> None:
            for b in parts:
                stream = kernel.evaluate(b)
                rows = daily.evaluate(b, {})
                feats = dict(zip(fraud.stream_features(), stream.T, strict=True))
                feats.update(zip(fraud.daily_features(), rows.T, strict=True))
                apply_on_demand(fraud.on_demand, b, feats, len(stream))

        return run

    p = args.passes
    print(f"{n} events, batches of {BATCH}, median of {p} passes (µs/event)")
    print(f"compiled customer windows     {median_us(p, n, lambda: compiled(fraud)):6.2f}")
    print(f"compiled whole fraud example  {median_us(p, n, compiled_whole):6.2f}")
    day = SECONDS_PER_DAY
    extremes = windowed(
        fraud,
        [AggSpec(f"{fn}_{w}", "tx_amount", fn, w * day) for fn in ("min", "max") for w in (1, 30)],
    )
    hot = dict(cols)
    hot["customer_id"] = np.array([f"h{int(c) % 20}" for c in cols["customer_id"]], dtype=object)
    hot_parts = batches(hot)
    for refresh in ("append", "segment"):
        normal = median_us(p, n, lambda r=refresh: compiled(extremes, r))  # type: ignore[misc]

        def hot_run(r: str = refresh) -> Callable[[], object]:
            kernel = StreamKernel(extremes, margin_s=MARGIN_S, refresh=r)
            return lambda: [kernel.evaluate(b) for b in hot_parts]

        print(
            f"min/max tables {refresh:8s} customers {normal:6.2f}   20 hot keys "
            f"{median_us(p, n, hot_run):6.2f}"
        )


if __name__ == "__main__":
    main()
