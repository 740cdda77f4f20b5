"""Train the anomaly example's model: an IsolationForest on the training set, exported to ONNX.

    python train.py --training-set data/training.parquet --events data/readings.parquet \
        --out model.onnx

Reads the feature service's inputs, in order, from the Feast repository (``--repo``), fits an
IsolationForest on those columns of the training set (``stream-infer features training-set``)
and writes ``model.onnx`` with skl2onnx: one float input ``input[?, n]`` (metadata property
``feature_names``: the inputs, in order), outputs ``label`` (1 normal, -1 anomalous) and
``scores``, scikit-learn's ``decision_function``: higher is more normal, anomalous below 0. So
the score's positive direction is *low* and the threshold 0
(``stream-infer model register ... --score-kind decision --positive low --threshold 0``).

The threshold is the isolation forest paper's (``contamination="auto"``: a reading is anomalous
when its average path length scores below -0.5), not fitted on the faults; ``--contamination``
replaces it with the share of readings you expect to be anomalous. Each tree sees
``--max-samples`` readings (2048, not scikit-learn's 256: faults are a few percent of a dense
stream, and on small subsamples the normal readings' tails are isolated as often as faults).

With ``--events`` holding a ``fault`` column (``loadgen generate --example anomaly`` writes it,
for evaluation only), prints precision (flagged readings that are inside an injected fault) and
recall per fault kind at that threshold. The last line printed is a JSON summary.
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
    parser.add_argument("--events", type=Path, default=None, help="readings with a fault column")
    parser.add_argument("--out", type=Path, default=Path("model.onnx"))
    parser.add_argument("--contamination", type=_contamination, default="auto")
    parser.add_argument("--max-samples", type=int, default=2048)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from sklearn.ensemble import IsolationForest

    from stream_infer.streamdef.feast_reader import load_definitions

    defs = load_definitions(args.repo, args.service)
    frame = pd.read_parquet(args.training_set)
    x = frame[list(defs.inputs)].to_numpy(np.float32)
    model = IsolationForest(
        n_estimators=args.trees,
        max_samples=min(args.max_samples, len(x)),
        contamination=args.contamination,
        random_state=args.seed,
    ).fit(x)
    args.out.write_bytes(export(model, list(defs.inputs)))

    summary: dict[str, Any] = {
        "model": str(args.out),
        "service": defs.service,
        "inputs": len(defs.inputs),
        "rows": len(frame),
        "threshold": 0.0,
        "score": "scores (decision_function; anomalous below the threshold)",
    }
    if args.events is not None:
        summary |= evaluate(model, frame, x, pd.read_parquet(args.events), defs.source)
    for key, value in summary.items():
        print(f"{key:>12}: {value}")
    print(json.dumps(summary))
    return 0


def _contamination(text: str) -> float | str:
    return text if text == "auto" else float(text)


def export(model: Any, inputs: list[str]) -> bytes:
    """The fitted IsolationForest as ONNX bytes, its input columns named in its metadata."""
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, len(inputs)]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onnx.helper.set_model_props(onx, {"feature_names": json.dumps(inputs)})
    data: bytes = onx.SerializeToString()
    return data


def evaluate(
    model: Any, frame: pd.DataFrame, x: np.ndarray, events: pd.DataFrame, source: Any
) -> dict[str, Any]:
    """Precision and recall of the model's flags against the events' ``fault``: overall (a
    flag inside any fault is right) and per kind (recall; precision among the flags on that
    kind's readings and on normal ones)."""
    if "fault" not in events.columns:
        return {"evaluation": f"no fault column in the events ({list(events.columns)})"}
    event_id = source.event_id_field
    ids = events[event_id].astype(str)
    fault = frame[event_id].astype(str).map(dict(zip(ids, events["fault"], strict=True)))
    fault = fault.fillna("none").to_numpy()
    flagged = model.decision_function(x) < 0.0
    faulty = fault != "none"
    kinds = sorted(set(fault[faulty].tolist()))
    recall = {str(k): round(float(flagged[fault == k].mean()), 3) for k in kinds}
    precision = {
        str(k): round(float((fault[flagged & ((fault == k) | ~faulty)] == k).mean()), 3)
        for k in kinds
        if (flagged & ((fault == k) | ~faulty)).any()
    }
    return {
        "flagged": int(flagged.sum()),
        "faulty": int(faulty.sum()),
        "precision": round(float(faulty[flagged].mean()) if flagged.any() else 0.0, 3),
        "recall": round(float(flagged[faulty].mean()) if faulty.any() else 0.0, 3),
        "recall_by_kind": recall,
        "precision_by_kind": precision,
    }


if __name__ == "__main__":
    raise SystemExit(main())
