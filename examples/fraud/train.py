"""Train the fraud example's model: a random forest on the training set, exported to ONNX.

    python train.py --training-set data/training.parquet --out model.onnx

Reads the feature service's inputs, in order, from the Feast repository (``--repo``) and the
label ``tx_fraud`` from the training set (``stream-infer features training-set --labels ...``
joins it). Drops the first ``--warmup-days`` (the 30-day windows are still filling), splits the
rest in time (the last ``--test-share`` of the days is held out), fits a random forest on the
earlier part and writes ``model.onnx`` with skl2onnx: one float input ``input[?, n]`` (metadata
property ``feature_names``: the inputs, in order), outputs ``label`` and ``probabilities[?, 2]``
(the last column is the probability of fraud: positive *high*). Prints ROC AUC, average
precision, and precision and recall at ``--threshold`` on the held-out days; the last line
printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def main(argv: list[str] | None = None) -> int:
    """Train, export, evaluate; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path("feature_repo"))
    parser.add_argument("--service", default=None, help="default: the repository's only one")
    parser.add_argument("--training-set", type=Path, default=Path("data/training.parquet"))
    parser.add_argument("--label", default="tx_fraud")
    parser.add_argument("--out", type=Path, default=Path("model.onnx"))
    parser.add_argument("--warmup-days", type=int, default=30)
    parser.add_argument("--test-share", type=float, default=0.2)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import average_precision_score, roc_auc_score

    from stream_infer.streamdef.feast_reader import load_definitions

    defs = load_definitions(args.repo, args.service)
    frame = pd.read_parquet(args.training_set)
    if args.label not in frame.columns:
        parser.error(f"the training set has no {args.label} column: build it with --labels")
    stamps = pd.to_datetime(frame[defs.source.timestamp_field], utc=True)
    days = (stamps - stamps.min()).dt.days
    frame = frame[(days >= args.warmup_days) & frame[args.label].notna()]
    days = days[frame.index]
    cut = days.min() + (days.max() - days.min() + 1) * (1 - args.test_share)
    train, test = frame[days < cut], frame[days >= cut]
    if train.empty or test.empty:
        parser.error(f"too few days after the {args.warmup_days}-day warm-up to split in time")
    inputs = list(defs.inputs)
    model = RandomForestClassifier(
        n_estimators=args.trees,
        max_depth=10,
        min_samples_leaf=5,
        class_weight="balanced_subsample",
        n_jobs=1,
        random_state=args.seed,
    ).fit(train[inputs].to_numpy(np.float32), train[args.label].to_numpy(np.int64))
    args.out.write_bytes(export(model, inputs))

    y = test[args.label].to_numpy(np.int64)
    p = model.predict_proba(test[inputs].to_numpy(np.float32))[:, 1]
    flagged = p >= args.threshold
    two_classes = len(set(y.tolist())) == 2
    summary: dict[str, Any] = {
        "model": str(args.out),
        "service": defs.service,
        "inputs": len(inputs),
        "train_rows": len(train),
        "test_rows": len(test),
        "test_frauds": int(y.sum()),
        "roc_auc": round(float(roc_auc_score(y, p)), 4) if two_classes else None,
        "average_precision": round(float(average_precision_score(y, p)), 4)
        if two_classes
        else None,
        "threshold": args.threshold,
        "precision": round(float(y[flagged].mean()), 3) if flagged.any() else 0.0,
        "recall": round(float(flagged[y == 1].mean()), 3) if y.any() else 0.0,
    }
    for key, value in summary.items():
        print(f"{key:>17}: {value}")
    print(json.dumps(summary))
    return 0


def export(model: Any, inputs: list[str]) -> bytes:
    """The fitted classifier as ONNX bytes (no ZipMap), its input columns in its metadata."""
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, len(inputs)]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onnx.helper.set_model_props(onx, {"feature_names": json.dumps(inputs)})
    data: bytes = onx.SerializeToString()
    return data


if __name__ == "__main__":
    raise SystemExit(main())
