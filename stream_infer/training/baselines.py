"""The handbook's baseline table, reproduced on our features: ``python -m
stream_infer.training.baselines --transactions <parquet>``.

Trains each baseline of the handbook's chapter 3.4 ("Baseline fraud detection system",
section "Performances using standard prediction models") on one split, evaluates it with the
handbook's metrics and prints a markdown table next to the handbook's published test figures.
Nothing is registered. XGBoost, the handbook's fifth baseline, is listed with its published
figures only when the ``xgboost`` package is missing (it is not a dependency of this project).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

import pandas as pd

from stream_infer.config import load_settings
from stream_infer.training.trainer import (
    MODEL_KINDS,
    ModelKind,
    SplitConfig,
    fit_and_evaluate,
    handbook_split,
)
from stream_infer.training.workflow import (
    build_frame,
    load_definitions,
    load_transactions,
    resolve_train_start,
    warm_up_days,
)


@dataclass(frozen=True)
class Baseline:
    """One row of the handbook's table: our model kind and its published test metrics
    (AUC ROC, average precision, card precision@100; ``kind`` None = not run here)."""

    label: str
    kind: ModelKind | None
    handbook: tuple[float, float, float]


#: From the handbook's BaselineModeling notebook (test set: training week from 2018-07-25,
#: 67,240 training transactions with 598 frauds; 58,264 test transactions with 385 frauds).
HANDBOOK_BASELINES: Final = (
    Baseline("logistic regression", "logreg", (0.871, 0.606, 0.291)),
    Baseline("decision tree, depth 2", "tree", (0.763, 0.496, 0.241)),
    Baseline("decision tree, unlimited depth", "tree-deep", (0.788, 0.309, 0.243)),
    Baseline("random forest, 100 trees", "forest-deep", (0.867, 0.658, 0.287)),
    Baseline("XGBoost", None, (0.862, 0.639, 0.273)),
)


def has_xgboost() -> bool:
    """Whether the optional ``xgboost`` package is importable."""
    return importlib.util.find_spec("xgboost") is not None


def compare(
    frame: pd.DataFrame,
    split: SplitConfig,
    seed: int = 0,
    extra: Sequence[ModelKind] = (),
    *,
    inputs: Sequence[str],
) -> list[dict[str, object]]:
    """Fit and evaluate every runnable baseline (plus ``extra`` kinds) on one split, on the
    frame's ``inputs`` columns.

    Returns:
        One dict per row: ``model``, ``kind``, our ``auc_roc``, ``average_precision``,
        ``card_precision_at_100`` and ``fit_s`` (None when not run), the handbook's
        ``handbook_auc_roc``, ``handbook_average_precision``, ``handbook_card_precision_at_100``
        (None for extra kinds), and the split's ``train_transactions``, ``train_frauds``,
        ``test_transactions``, ``test_frauds``.

    Raises:
        ValueError: the split leaves no training or no test rows.
    """
    train, test = handbook_split(frame, split)
    if train.empty or test.empty:
        raise ValueError(f"split {split} leaves {len(train)} training and {len(test)} test rows")
    sizes = {
        "train_transactions": len(train),
        "train_frauds": int(train["tx_fraud"].sum()),
        "test_transactions": len(test),
        "test_frauds": int(test["tx_fraud"].sum()),
    }
    plan: list[tuple[str, ModelKind | None, tuple[float, float, float] | None]] = [
        (b.label, b.kind, b.handbook) for b in HANDBOOK_BASELINES
    ]
    plan += [(kind, kind, None) for kind in extra]
    rows: list[dict[str, object]] = []
    for label, kind, published in plan:
        row: dict[str, object] = {"model": label, "kind": kind, **sizes}
        ours: tuple[float | None, ...] = (None, None, None, None)
        if kind is not None:
            began = time.perf_counter()
            _estimator, metrics = fit_and_evaluate(train, test, kind, seed, inputs=inputs)
            ours = (
                metrics["auc_roc"],
                metrics["average_precision"],
                metrics["card_precision_at_100"],
                time.perf_counter() - began,
            )
        names = ("auc_roc", "average_precision", "card_precision_at_100")
        row.update(dict(zip((*names, "fit_s"), ours, strict=True)))
        row.update(
            {f"handbook_{n}": (published[i] if published else None) for i, n in enumerate(names)}
        )
        rows.append(row)
    return rows


def _cell(value: object, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_table(rows: Sequence[dict[str, object]]) -> str:
    """The side-by-side table of :func:`compare`'s rows, as markdown."""
    lines = [
        "| model | AUC ROC | handbook | average precision | handbook | card precision@100 "
        "| handbook | fit + score s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [
            str(r["model"]),
            _cell(r["auc_roc"]),
            _cell(r["handbook_auc_roc"]),
            _cell(r["average_precision"]),
            _cell(r["handbook_average_precision"]),
            _cell(r["card_precision_at_100"]),
            _cell(r["handbook_card_precision_at_100"]),
            _cell(r["fit_s"], 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the features, run :func:`compare`, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--transactions", type=Path, default=None, help="loadgen parquet")
    parser.add_argument("--quick", action="store_true", help="small generated dataset")
    parser.add_argument("--train-start", type=date.fromisoformat, default=None)
    parser.add_argument("--train-start-day", type=int, default=None)
    parser.add_argument(
        "--extra", nargs="*", choices=MODEL_KINDS, default=["forest", "mlp"], help="more kinds"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    raw = load_transactions(args.transactions, args.quick, args.seed)
    settings = load_settings()
    defs = load_definitions(settings)
    frame = build_frame(raw, defs, settings)
    split = resolve_train_start(frame, args.train_start_day, args.train_start, warm_up_days(defs))
    rows = compare(frame, split, args.seed, extra=args.extra, inputs=defs.inputs)
    first = frame["tx_datetime"].min().floor("D")
    r = rows[0]
    print(
        f"{len(raw):,} transactions; training week from "
        f"{(first + pd.Timedelta(days=split.train_start_day)).date()}: "
        f"{r['train_transactions']:,} transactions ({r['train_frauds']} frauds); test week: "
        f"{r['test_transactions']:,} ({r['test_frauds']} frauds); "
        f"xgboost {'installed, not wired' if has_xgboost() else 'not installed'}\n"
    )
    print(markdown_table(rows))
    print(f"\n{time.perf_counter() - began:.1f}s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
