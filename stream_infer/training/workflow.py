"""``stream-infer train``: data in, registered model out.

Quick mode generates a small dataset with the handbook simulator (loadgen) so a fresh clone can
serve a model in seconds; the full run takes a loadgen parquet (1.78M transactions: about half
a minute end to end with the default logistic regression, see docs/TRAINING.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd

from stream_infer.config import Settings
from stream_infer.features.definitions import (
    CUSTOMER_HORIZON_S,
    SECONDS_PER_DAY,
    TERMINAL_HORIZON_DAYS,
)
from stream_infer.model.registry import ModelRegistry
from stream_infer.training.trainer import (
    HANDBOOK_TRAIN_START,
    ModelKind,
    SplitConfig,
    TrainResult,
    day_index,
    train_and_register,
)

#: Small enough to run in seconds, large enough for a 30-day warm-up and the split.
QUICK_SIMULATION = {"n_customers": 500, "n_terminals": 1000, "nb_days": 60, "seed": 0}
#: From this day index on, every feature window lies inside the data: customer windows reach
#: 30 days back, terminal windows 37 (the 7-day label delay, then 30 days).
WARM_UP_DAYS = max(CUSTOMER_HORIZON_S // SECONDS_PER_DAY, TERMINAL_HORIZON_DAYS)
FEATURE_SERVICE = "fraud_model_v1"


def load_transactions(path: Path | None, quick: bool, seed: int) -> pd.DataFrame:
    """Transactions with labels: a parquet from ``loadgen generate``, or a quick simulation."""
    if path is not None:
        return pd.read_parquet(path)
    from loadgen.simulator import SimulationConfig, generate

    params = dict(QUICK_SIMULATION) if quick else {}
    params["seed"] = seed
    return generate(SimulationConfig(**params), progress=False)  # type: ignore[arg-type]


def build_frame(raw: pd.DataFrame, settings: Settings, via_feast: bool = False) -> pd.DataFrame:
    """The 15 features of every transaction plus ``tx_datetime``, ``customer_id`` and
    ``tx_fraud``: computed in batch with the shared definitions, or through Feast's
    point-in-time join (slower; it drops rows Feast cannot join, see DESIGN.md).

    Raises:
        ValueError: as :func:`stream_infer.features.offline.compute_features`.
    """
    if via_feast:
        from stream_infer.features.feast_repo import training_frame_via_feast

        return training_frame_via_feast(raw, settings)
    from stream_infer.features.offline import compute_features

    feats = compute_features(raw)
    return feats.merge(
        raw[["transaction_id", "tx_datetime", "tx_fraud"]], on="transaction_id", how="left"
    )


def default_train_start_day(frame: pd.DataFrame, split_days: int) -> int:
    """The handbook's training start (2018-07-25) when the frame covers its whole split after
    the warm-up (:data:`WARM_UP_DAYS`), else the first day after the warm-up.

    Raises:
        ValueError: the frame is empty.
    """
    handbook = day_index(frame, HANDBOOK_TRAIN_START)
    covered = day_index(frame, pd.to_datetime(frame["tx_datetime"]).max().date()) + 1
    if handbook >= WARM_UP_DAYS and handbook + split_days <= covered:
        return handbook
    return WARM_UP_DAYS


def resolve_train_start(
    frame: pd.DataFrame, train_start_day: int | None, train_start: date | None
) -> SplitConfig:
    """The split for a start given as a day index, a date, or neither (the default).

    Raises:
        ValueError: both are given, or the date is before the frame's first day.
    """
    if train_start_day is not None and train_start is not None:
        raise ValueError("give the training start as a day index or as a date, not both")
    if train_start is not None:
        start = day_index(frame, train_start)
        if start < 0:
            raise ValueError(f"training start {train_start} is before the data's first day")
        return SplitConfig(train_start_day=start)
    if train_start_day is not None:
        return SplitConfig(train_start_day=train_start_day)
    return SplitConfig(default_train_start_day(frame, SplitConfig(0).span_days))


def run_training(
    settings: Settings,
    *,
    quick: bool = False,
    transactions: Path | None = None,
    kind: ModelKind = "logreg",
    train_start_day: int | None = None,
    train_start: date | None = None,
    via_feast: bool = False,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Build the training frame with the shared definitions, train, and register.

    The training week starts at ``train_start`` (a date), or ``train_start_day`` (a day index
    from the data's first day), or by default as :func:`default_train_start_day` says.

    Raises:
        ValueError: both starts are given, or the split leaves no training or test rows.
    """
    began = time.perf_counter()
    raw = load_transactions(transactions, quick, seed)
    echo(f"{len(raw):,} transactions, {raw['tx_fraud'].mean():.2%} fraud")
    frame = build_frame(raw, settings, via_feast)
    split = resolve_train_start(frame, train_start_day, train_start)
    t0 = pd.to_datetime(frame["tx_datetime"]).min().floor("D") + pd.Timedelta(
        days=split.train_start_day
    )
    echo(f"features in {time.perf_counter() - began:.1f}s; training week from {t0.date()}")
    result = train_and_register(
        frame,
        ModelRegistry(settings.model.registry_dir),
        settings.model.name,
        split,
        kind,
        feature_service=FEATURE_SERVICE,
        seed=seed,
    )
    echo(
        f"{kind}: {result.train_rows:,} training / {result.test_rows:,} test transactions, "
        f"{time.perf_counter() - began:.1f}s in all"
    )
    return result
