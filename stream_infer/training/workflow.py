"""``stream-infer train``: data in, registered model out.

Quick mode generates a small dataset with the handbook simulator (loadgen) so a fresh clone can
serve a model in seconds; the full run takes a loadgen parquet.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from stream_infer.config import Settings
from stream_infer.features.definitions import CUSTOMER_HORIZON_S, SECONDS_PER_DAY
from stream_infer.model.registry import ModelRegistry
from stream_infer.training.trainer import ModelKind, SplitConfig, TrainResult, train_and_register

#: Small enough to run in seconds, large enough for a 30-day warm-up and the split.
QUICK_SIMULATION = {"n_customers": 500, "n_terminals": 1000, "nb_days": 60, "seed": 0}
WARM_UP_DAYS = CUSTOMER_HORIZON_S // SECONDS_PER_DAY
FEATURE_SERVICE = "fraud_model_v1"


def load_transactions(path: Path | None, quick: bool, seed: int) -> pd.DataFrame:
    """Transactions with labels: a parquet from ``loadgen generate``, or a quick simulation."""
    if path is not None:
        return pd.read_parquet(path)
    from loadgen.simulator import SimulationConfig, generate

    params = dict(QUICK_SIMULATION) if quick else {}
    params["seed"] = seed
    return generate(SimulationConfig(**params), progress=False)  # type: ignore[arg-type]


def run_training(
    settings: Settings,
    *,
    quick: bool = False,
    transactions: Path | None = None,
    kind: ModelKind = "logreg",
    train_start_day: int | None = None,
    via_feast: bool = False,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Build the training frame with the shared definitions, train, and register."""
    raw = load_transactions(transactions, quick, seed)
    echo(f"{len(raw):,} transactions, {raw['tx_fraud'].mean():.2%} fraud")
    if via_feast:
        from stream_infer.features.feast_repo import training_frame_via_feast

        frame = training_frame_via_feast(raw, settings)
    else:
        from stream_infer.features.offline import compute_features

        feats = compute_features(raw)
        frame = feats.merge(
            raw[["transaction_id", "tx_datetime", "tx_fraud"]], on="transaction_id", how="left"
        )
    split = SplitConfig(train_start_day=train_start_day or WARM_UP_DAYS + 1)
    return train_and_register(
        frame,
        ModelRegistry(settings.model.registry_dir),
        settings.model.name,
        split,
        kind,
        feature_service=FEATURE_SERVICE,
        seed=seed,
    )
