"""Models a user might bring, exported to ONNX by their own libraries, and odd ONNX graphs.

Each exporter takes a training matrix ``x`` (float32, the service's features in order) and
labels ``y``, fits a tiny model and returns ``(onnx_bytes, native_scores)``: the scores the
library itself gives on ``x`` (the positive class probability, or the decision function), so a
test can hold the registered artifact to them.

:func:`fraud_training_set` is a training set built from the fraud example's repository with
:mod:`stream_infer.streamdef.training`, as ``stream-infer features training-set`` builds it.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from stream_infer.features.synthetic import synthetic_transactions
from stream_infer.streamdef.spec import StreamDefinitions
from stream_infer.streamdef.training import training_frame

FRAUD_REPO = Path(__file__).resolve().parents[2] / "examples" / "fraud" / "feature_repo"
Matrix = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float64]
Exported = tuple[bytes, Scores]
Exporter = Callable[[Matrix, npt.NDArray[np.int64]], Exported]
#: Opsets the converters installed here support (onnxmltools stops at 15).
SKL_OPSET = 17
MLTOOLS_OPSET = 15


def fraud_training_set(defs: StreamDefinitions) -> pd.DataFrame:
    """A small labelled training set of the fraud example (about 2,000 rows, some frauds)."""
    history = synthetic_transactions(n_customers=25, n_terminals=15, n_days=40, seed=11)
    return training_frame(defs, history, history)


def sklearn_logreg(x: Matrix, y: npt.NDArray[np.int64]) -> Exported:
    """A scaled logistic regression through skl2onnx (float32 input, ``probabilities``)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        options={"zipmap": False},
        target_opset=SKL_OPSET,
    )
    return onx.SerializeToString(), model.predict_proba(x)[:, 1]


def sklearn_mlp_float64(x: Matrix, y: npt.NDArray[np.int64]) -> Exported:
    """A small MLP classifier through skl2onnx with a float64 (``tensor(double)``) input."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x64 = x.astype(np.float64)
    mlp = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0)
    model = make_pipeline(StandardScaler(), mlp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tiny MLP may not converge: irrelevant here
        model.fit(x64, y)
    onx = convert_sklearn(
        model,
        initial_types=[("input", DoubleTensorType([None, x.shape[1]]))],
        options={"zipmap": False},
        target_opset=SKL_OPSET,
    )
    return onx.SerializeToString(), model.predict_proba(x64)[:, 1]


def isolation_forest(x: Matrix, _y: npt.NDArray[np.int64]) -> Exported:
    """An IsolationForest through skl2onnx: outputs ``label`` and ``scores`` (the decision
    function: low for anomalies, below 0 for those ``predict`` calls -1)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(n_estimators=20, random_state=0).fit(x)
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        target_opset={"": SKL_OPSET, "ai.onnx.ml": 3},
    )
    return onx.SerializeToString(), model.decision_function(x)


def xgboost_classifier(x: Matrix, y: npt.NDArray[np.int64]) -> Exported:
    """A 10-tree XGBoost classifier through onnxmltools (``probabilities``)."""
    import onnxmltools
    import xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = xgboost.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1).fit(x, y)
    onx = onnxmltools.convert_xgboost(
        model,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        target_opset=MLTOOLS_OPSET,
    )
    return onx.SerializeToString(), model.predict_proba(x)[:, 1]


def lightgbm_classifier(x: Matrix, y: npt.NDArray[np.int64]) -> Exported:
    """A 10-tree LightGBM classifier through onnxmltools (``zipmap=False``)."""
    import lightgbm
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = lightgbm.LGBMClassifier(n_estimators=10, num_leaves=7, verbose=-1, n_jobs=1)
    model.fit(x, y)
    onx = onnxmltools.convert_lightgbm(
        model,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        target_opset=MLTOOLS_OPSET,
        zipmap=False,
    )
    return onx.SerializeToString(), np.asarray(model.predict_proba(x))[:, 1]


def torch_mlp(x: Matrix, y: npt.NDArray[np.int64]) -> Exported:
    """A PyTorch MLP with a sigmoid head, 50 full-batch Adam steps, exported by
    ``torch.onnx.export``: one output ``score`` of shape ``[n, 1]`` (a probability the file
    does not call one)."""
    import torch

    torch.manual_seed(0)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 8), torch.nn.ReLU(), torch.nn.Linear(8, 1), torch.nn.Sigmoid()
    )

    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.from_numpy(mean))
            self.register_buffer("std", torch.from_numpy(std))
            self.net = net

        def forward(self, rows: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.net((rows - self.mean) / self.std)
            return out

    model = Scaled()
    features, target = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))[:, None]
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(50):
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy(model(features), target)
        loss.backward()
        optimiser.step()
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (features[:2],),
            buffer,
            input_names=["input"],
            output_names=["score"],
            dynamic_axes={"input": {0: "n"}, "score": {0: "n"}},
            dynamo=False,
        )
    with torch.no_grad():
        native = model(features).numpy()[:, 0].astype(np.float64)
    return buffer.getvalue(), native


def with_feature_names(onnx_bytes: bytes, names: Sequence[str]) -> bytes:
    """The same model with its metadata property ``feature_names`` set (a JSON list)."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(onnx_bytes)
    helper.set_model_props(model, {"feature_names": json.dumps(list(names))})
    return model.SerializeToString()


def graph(
    inputs: Sequence[tuple[str, int, Sequence[int | str | None]]],
    nodes: Sequence[tuple[str, Sequence[str], Sequence[str], dict[str, object]]],
    outputs: Sequence[tuple[str, int, Sequence[int | str | None]]],
) -> bytes:
    """A hand-written ONNX model (opset 17): ``(name, onnx elem type, shape)`` inputs and
    outputs, ``(op, inputs, outputs, attributes)`` nodes."""
    import onnx
    from onnx import helper

    g = helper.make_graph(
        [helper.make_node(op, list(i), list(o), **attrs) for op, i, o, attrs in nodes],
        "hand",
        [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in outputs],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
