"""An ONNX model's signature, checked against a feature service before it is registered.

What a model must take: **one 2-D float input** (``tensor(float)`` or ``tensor(double)``, the
manifest records which and the session feeds exactly that) whose width is fixed and equals the
number of the service's features. Names are checked where the model has them:

- the model's metadata property ``feature_names`` (ONNX ``metadata_props``), a JSON list or a
  comma-separated string of the columns' feature names in order: missing, extra and misordered
  names are refused (``onnx.helper.set_model_props(model, {"feature_names": json.dumps(names)})``
  after any exporter);
- several inputs (one per feature, as ``skl2onnx.to_onnx`` makes from a DataFrame): their names
  are compared with the service's first, then the model is refused anyway, since the stream
  feeds one matrix (export with one input of the service's width).

What it gives: the score output is ``--output`` or the obvious one: a float tensor called
``probabilities`` (skl2onnx and onnxmltools classifiers with ``zipmap=False``), else the only
float tensor output (``scores`` of an IsolationForest, ``variable`` of a regressor, a PyTorch
module's one output). A 2-D output of two columns is a classifier's class probabilities and its
last column (the positive class) is the score; one column is the score itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from stream_infer.errors import DefinitionError
from stream_infer.model.manifest import InputDtype, ScoreKind
from stream_infer.model.session import ONNX_TYPES
from stream_infer.streamdef.model_inputs import ServiceInputs, check_model_inputs

#: The metadata property naming the input's columns.
FEATURE_NAMES_KEY: Final = "feature_names"
#: The output name classifier exporters give their class probabilities (``zipmap=False``).
PROBABILITIES: Final = "probabilities"

Dim = int | str | None


@dataclass(frozen=True)
class TensorInfo:
    """One input or output: its name, ONNX type (``tensor(float)``) and shape."""

    name: str
    type: str
    shape: tuple[Dim, ...]


@dataclass(frozen=True)
class Signature:
    """A loaded model's inputs, outputs and metadata properties."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    metadata: Mapping[str, str]

    @classmethod
    def of(cls, session: Any) -> Signature:
        """The signature of an ONNX Runtime ``InferenceSession``."""

        def infos(args: Any) -> tuple[TensorInfo, ...]:
            return tuple(TensorInfo(a.name, str(a.type), tuple(a.shape or ())) for a in args)

        metadata = dict(session.get_modelmeta().custom_metadata_map or {})
        return cls(infos(session.get_inputs()), infos(session.get_outputs()), metadata)

    def feature_names(self) -> tuple[str, ...] | None:
        """The names the metadata gives the input's columns, or None without any.

        Raises:
            DefinitionError: the property is neither a JSON list of strings nor a
                comma-separated string.
        """
        raw = self.metadata.get(FEATURE_NAMES_KEY)
        if raw is None:
            return None
        text = raw.strip()
        if text.startswith("["):
            try:
                names = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DefinitionError(f"metadata {FEATURE_NAMES_KEY} is not JSON: {exc}") from exc
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise DefinitionError(f"metadata {FEATURE_NAMES_KEY} is not a list of names")
            return tuple(names)
        return tuple(n.strip() for n in text.split(","))


def _show(t: TensorInfo) -> str:
    return f"{t.name}: {t.type}{list(t.shape)}"


def check_inputs(sig: Signature, service: ServiceInputs) -> tuple[str, InputDtype]:
    """The input's name and dtype, once it fits ``service`` (see the module docstring).

    Raises:
        DefinitionError: naming the difference: the number of inputs, the dtype, the rank,
            a width that is not fixed or differs from the service's feature count, names
            missing, extra or in another order.
    """
    where = f"feature service {service.service}"
    if len(sig.inputs) != 1:
        check_model_inputs(service, [t.name for t in sig.inputs], None)
        raise DefinitionError(
            f"the model takes {len(sig.inputs)} inputs ({', '.join(_show(t) for t in sig.inputs)});"
            f" the stream feeds one 2-D float matrix of {where}'s {len(service.inputs)} "
            "features: export with one input"
        )
    (tensor,) = sig.inputs
    dtype = ONNX_TYPES.get(tensor.type)
    if dtype is None:
        raise DefinitionError(
            f"the model's input {_show(tensor)} is not float32 or float64 "
            "(tensor(float) or tensor(double))"
        )
    if len(tensor.shape) != 2:
        raise DefinitionError(
            f"the model's input {_show(tensor)} has rank {len(tensor.shape)}; the stream feeds "
            f"a 2-D matrix [rows, {len(service.inputs)}]"
        )
    width = tensor.shape[1]
    if not isinstance(width, int):
        raise DefinitionError(
            f"the model's input {_show(tensor)} has no fixed width; {where} names "
            f"{len(service.inputs)} features: export with that width"
        )
    check_model_inputs(service, sig.feature_names(), width)
    return tensor.name, dtype


def choose_output(
    sig: Signature, output: str | None, score_kind: ScoreKind | None
) -> tuple[str, ScoreKind]:
    """The score output's name and what it is (``score_kind`` if given, else a probability
    for a 2-column or ``probabilities`` output, a decision score otherwise).

    Raises:
        DefinitionError: ``output`` is not an output, or not a float tensor; no output is
            obvious (none or several float tensors; a ZipMap's sequence of maps); the output
            has more than two columns.
    """
    floats = [t for t in sig.outputs if t.type in ONNX_TYPES]
    listed = ", ".join(_show(t) for t in sig.outputs)
    if output is not None:
        picked = next((t for t in sig.outputs if t.name == output), None)
        if picked is None:
            raise DefinitionError(f"the model has no output {output!r} (it has {listed})")
        if picked not in floats:
            raise DefinitionError(f"output {_show(picked)} is not a float tensor")
    else:
        named = [t for t in floats if t.name == PROBABILITIES]
        if named:
            picked = named[0]
        elif len(floats) == 1:
            picked = floats[0]
        elif not floats:
            raise DefinitionError(
                f"the model has no float tensor output ({listed}); a classifier's ZipMap output "
                "is a sequence of maps: export with zipmap=False"
            )
        else:
            raise DefinitionError(f"several outputs could be the score ({listed}): pick --output")
    columns = picked.shape[1] if len(picked.shape) == 2 else None
    if len(picked.shape) > 2 or (isinstance(columns, int) and columns > 2):
        raise DefinitionError(
            f"output {_show(picked)} is not one score a row (multi-class is not served)"
        )
    if score_kind is None:
        probability = columns == 2 or "probab" in picked.name.lower()
        score_kind = "probability" if probability else "decision"
    return picked.name, score_kind
