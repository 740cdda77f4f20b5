"""``stream-infer train``: data in, registered candidate out.

Quick mode generates a small dataset with the handbook simulator (loadgen) so a fresh clone can
serve a model in seconds; the full run takes a loadgen parquet (1.78M transactions: about half
a minute end to end with the default logistic regression, see docs/TRAINING.md).

Registration goes through :func:`stream_infer.model.intake.register_onnx`, as a model brought
by its user does: the exported artifact's input is checked against the feature service's
features, and the reference deciles are the artifact's own scores on the test week.

The new version is a *candidate*: it serves only once promoted (``--promote`` here, or
``stream-infer model promote``), except a model's first version, which becomes champion so a
fresh registry serves what was just trained. Its manifest records what reproducing and judging
it needs: the hyperparameters and split, the code commit, the training data's hash, the test
metrics, and the reference distribution of its scores on the test week (deciles and the counts
in the bins they make, which the drift check compares live scores against).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stream_infer.config import Settings
from stream_infer.model.export import to_onnx
from stream_infer.model.intake import (
    FeatureService,
    Provenance,
    register_onnx,
)
from stream_infer.model.registry import Registry, open_registry
from stream_infer.streamdef.spec import SECONDS_PER_DAY, StreamDefinitions
from stream_infer.training.trainer import (
    HANDBOOK_TRAIN_START,
    ModelKind,
    SplitConfig,
    TrainResult,
    day_index,
    fit_and_evaluate,
    frame_hash,
    handbook_split,
    utc_naive,
)

#: Small enough to run in seconds, large enough for a 30-day warm-up and the split.
QUICK_SIMULATION = {"n_customers": 500, "n_terminals": 1000, "nb_days": 60, "seed": 0}


def warm_up_days(defs: StreamDefinitions) -> int:
    """The first day index from which every feature window lies inside the data: the longest
    stream window in whole days (rounded up), or a daily view's delay plus its longest window
    (the fraud example: 30 and 7 + 30, so 37)."""
    stream = [-(-v.horizon_s // SECONDS_PER_DAY) for v in defs.stream_views]
    daily = [v.horizon_days for v in defs.daily_views]
    return max([*stream, *daily, 0])


def load_definitions(settings: Settings) -> StreamDefinitions:
    """The declared repository's definitions (``features.repo_dir``): what the model is
    trained on and what the stream serves it.

    Raises:
        DefinitionError: the repository is refused.
    """
    from stream_infer.streamdef.feast_reader import load_definitions as load

    return load(settings.features.repo_dir)


def load_transactions(path: Path | None, quick: bool, seed: int) -> pd.DataFrame:
    """Transactions with labels: a parquet from ``loadgen generate``, or a quick simulation."""
    if path is not None:
        return pd.read_parquet(path)
    from loadgen.simulator import SimulationConfig, generate

    params = dict(QUICK_SIMULATION) if quick else {}
    params["seed"] = seed
    return generate(SimulationConfig(**params), progress=False)  # type: ignore[arg-type]


def build_frame(
    raw: pd.DataFrame, defs: StreamDefinitions, settings: Settings, via_feast: bool = False
) -> pd.DataFrame:
    """The training frame of ``raw`` (transactions with their ``tx_fraud`` labels): the
    definitions' inputs, keys, ``tx_datetime`` (naive UTC, converted here once) and
    ``tx_fraud``, one row per transaction in time order, built by the training set builder
    (:func:`stream_infer.streamdef.training.training_frame`, the labels read from ``raw``
    itself); or through the Feast serving repository's point-in-time join (a check: slower,
    it drops rows Feast cannot join, see DESIGN.md).

    Raises:
        DefinitionError: ``raw`` lacks a field of the definitions' sources.
    """
    if via_feast:
        from stream_infer.features.feast_repo import training_frame_via_feast

        frame = training_frame_via_feast(raw, settings)
    else:
        from stream_infer.streamdef.training import training_frame

        frame = training_frame(defs, raw, raw)
    return frame.assign(tx_datetime=utc_naive(frame["tx_datetime"]))


def default_train_start_day(frame: pd.DataFrame, split_days: int, warm_up: int) -> int:
    """The handbook's training start (2018-07-25) when the frame covers its whole split after
    the ``warm_up`` days (:func:`warm_up_days`), else the first day after the warm-up.

    Raises:
        ValueError: the frame is empty.
    """
    handbook = day_index(frame, HANDBOOK_TRAIN_START)
    covered = day_index(frame, utc_naive(frame["tx_datetime"]).max().date()) + 1
    if handbook >= warm_up and handbook + split_days <= covered:
        return handbook
    return warm_up


def resolve_train_start(
    frame: pd.DataFrame, train_start_day: int | None, train_start: date | None, warm_up: int
) -> SplitConfig:
    """The split for a start given as a day index, a date, or neither (the default, after
    ``warm_up`` days: see :func:`default_train_start_day`).

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
    return SplitConfig(default_train_start_day(frame, SplitConfig(0).span_days, warm_up))


def code_commit(where: Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the checkout holding this code, or None (no git, not a
    checkout: an installed wheel)."""
    folder = where or Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit or None


def hyperparameters(
    estimator: Any, kind: ModelKind, seed: int, split: SplitConfig
) -> dict[str, Any]:
    """What refitting needs: the kind, seed and split, and the classifier's own parameters
    (those with plain values; ``estimator.`` prefixed)."""
    params: dict[str, Any] = {
        "kind": kind,
        "seed": seed,
        "train_start_day": split.train_start_day,
        "train_days": split.train_days,
        "delay_days": split.delay_days,
        "test_days": split.test_days,
    }
    classifier = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    for key, value in sorted(classifier.get_params(deep=False).items()):
        if value is None or isinstance(value, bool | int | float | str):
            params[f"estimator.{key}"] = value
        elif isinstance(value, tuple | list) and all(isinstance(v, int | float) for v in value):
            params[f"estimator.{key}"] = list(value)
    return params


def train_candidate(
    frame: pd.DataFrame,
    registry: Registry,
    name: str,
    split: SplitConfig,
    kind: ModelKind = "logreg",
    *,
    inputs: Sequence[str],
    feature_service: str,
    seed: int = 0,
    promote: bool = False,
    actor: str | None = None,
    reason: str = "",
) -> TrainResult:
    """Split, fit, evaluate, export to ONNX, and register a candidate (champion if
    ``promote``, or if the model has none yet).

    ``frame`` holds the ``inputs`` columns (the feature service's features, in its order: the
    model's input and feature names) plus tx_datetime, customer_id and tx_fraud. The version
    is registered by :func:`stream_infer.model.intake.register_onnx` for ``feature_service``,
    with the test week as its reference set.

    Raises:
        ValueError: the split leaves no training or no test rows.
    """
    train, test = handbook_split(frame, split)
    if train.empty or test.empty or train["tx_fraud"].nunique() < 2:
        raise ValueError(
            f"split {split} leaves {len(train)} training rows ({int(train['tx_fraud'].sum())} "
            f"frauds) and {len(test)} test rows: generate more days"
        )
    estimator, metrics = fit_and_evaluate(train, test, kind, seed, inputs=inputs)
    metrics["train_transactions"] = float(len(train))
    metrics["train_frauds"] = float(train["tx_fraud"].sum())
    version = register_onnx(
        registry,
        name,
        to_onnx(estimator, len(inputs)),
        FeatureService(feature_service, tuple(inputs)),
        reference=test[list(inputs)].to_numpy(np.float64),
        provenance=Provenance(
            metrics=metrics,
            training_data_hash=frame_hash(train, [*inputs, "tx_fraud"]),
            description=f"{kind} on {len(train)} rows",
            hyperparameters=hyperparameters(estimator, kind, seed, split),
            code_commit=code_commit(),
        ),
        promote=promote,
        actor=actor,
        reason=reason,
    )
    return TrainResult(version, metrics, len(train), len(test))


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
    promote: bool = False,
    actor: str | None = None,
    reason: str = "",
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Build the training frame from the declared repository (``features.repo_dir``), train
    on its feature service's inputs, and register a candidate for that service in the
    configured registry (see :func:`train_candidate`).

    The training week starts at ``train_start`` (a date), or ``train_start_day`` (a day index
    from the data's first day), or by default as :func:`default_train_start_day` says.

    Raises:
        ValueError: both starts are given, or the split leaves no training or test rows.
        DefinitionError: the repository is refused, or the transactions lack a field of it.
    """
    began = time.perf_counter()
    defs = load_definitions(settings)
    raw = load_transactions(transactions, quick, seed)
    echo(f"{len(raw):,} transactions, {raw['tx_fraud'].mean():.2%} fraud")
    frame = build_frame(raw, defs, settings, via_feast)
    split = resolve_train_start(frame, train_start_day, train_start, warm_up_days(defs))
    t0 = frame["tx_datetime"].min().floor("D") + pd.Timedelta(days=split.train_start_day)
    echo(f"features in {time.perf_counter() - began:.1f}s; training week from {t0.date()}")
    result = train_candidate(
        frame,
        open_registry(settings.model),
        settings.model.name,
        split,
        kind,
        inputs=defs.inputs,
        feature_service=defs.service,
        seed=seed,
        promote=promote,
        actor=actor,
        reason=reason,
    )
    echo(
        f"{kind}: {result.train_rows:,} training / {result.test_rows:,} test transactions, "
        f"{time.perf_counter() - began:.1f}s in all"
    )
    return result
