"""Export a fitted scikit-learn estimator to ONNX with the registry's conventions."""

from __future__ import annotations

from typing import Any

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


def to_onnx(estimator: Any, n_features: int) -> bytes:
    """ONNX bytes for ``estimator``: one float input ``input[?, n_features]``, output
    ``probabilities[?, 2]`` (no ZipMap, so callers get a plain tensor).

    Raises:
        ImportError: the ``train`` extra (skl2onnx) is not installed.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={id(estimator): {"zipmap": False}},
        target_opset=17,
    )
    # skl2onnx names the outputs "label" and "probabilities" for classifiers.
    data: bytes = onx.SerializeToString()
    return data
