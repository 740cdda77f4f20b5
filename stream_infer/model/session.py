"""One ONNX Runtime session per process: CUDA first when asked or available, CPU otherwise.

:func:`load_model` verifies the artifact against its manifest (sha256, input signature, the
ordered feature list the code computes), opens the session, and warms it up, so the first real
batch is not the slow one.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from stream_infer.errors import ModelArtifactError
from stream_infer.model.manifest import InputDtype, Positive, ScoreKind
from stream_infer.model.registry import ModelVersion, Registry
from stream_infer.model.verdict import ScoreRule

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
Device = Literal["auto", "cpu", "cuda"]
FloatMatrix = npt.NDArray[np.float32]
#: ONNX's name of each input element type the manifest may record.
ONNX_TYPES: dict[str, InputDtype] = {"tensor(float)": "float32", "tensor(double)": "float64"}


class OrtModule(Protocol):
    """The slice of the ``onnxruntime`` module we use (tests substitute a fake)."""

    def get_available_providers(self) -> list[str]: ...

    def SessionOptions(self) -> Any: ...

    def InferenceSession(
        self, path_or_bytes: bytes, sess_options: Any = None, providers: Sequence[str] = ...
    ) -> Any: ...


def _onnxruntime() -> OrtModule:
    import onnxruntime

    # CUDA-less hosts would otherwise log an error per session about missing libraries.
    onnxruntime.set_default_logger_severity(3)
    module: OrtModule = onnxruntime
    return module


def cuda_libraries_load() -> bool:
    """Whether the CUDA driver and the runtime ONNX Runtime was built against load here.

    ``onnxruntime-gpu`` lists CUDA whenever it is installed; asking for it on a host without
    the libraries makes ONNX Runtime print a red "Failed to load library
    libonnxruntime_providers_cuda.so" error before it falls back. Loading the two libraries
    ourselves (quietly, with ctypes) tells the same thing without the noise.
    """
    import ctypes

    try:
        from onnxruntime.capi import build_and_package_info
    except ImportError:
        return False
    major = str(getattr(build_and_package_info, "cuda_version", "") or "").split(".")[0]
    if not major:
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
        ctypes.CDLL(f"libcudart.so.{major}")
    except OSError:
        return False
    return True


def choose_providers(
    available: Sequence[str], device: Device, cuda_loads: bool = True
) -> list[str]:
    """The provider list to ask for: CUDA then CPU when CUDA is wanted, listed and its
    libraries load (``cuda_loads``)."""
    if device in ("auto", "cuda") and CUDA in available and cuda_loads:
        return [CUDA, CPU]
    if device == "cuda":
        log.warning("device=cuda requested but %s is not usable here; using CPU", CUDA)
    return [CPU]


def open_session(
    model_bytes: bytes,
    device: Device = "auto",
    intra_op_threads: int = 1,
    ort: OrtModule | None = None,
    cuda_check: Callable[[], bool] | None = None,
) -> tuple[Any, str]:
    """An InferenceSession and the provider that actually runs it.

    A CUDA provider that is listed but cannot start (no driver, no GPU, missing libraries) falls
    back to CPU with a warning instead of failing: ``onnxruntime-gpu`` lists CUDA whenever it is
    installed, GPU or not.

    ``cuda_check`` says whether CUDA's libraries load (default: :func:`cuda_libraries_load`
    for the real ``onnxruntime``; a substituted ``ort`` is trusted as listed).

    Raises:
        ModelArtifactError: the bytes are not a model ONNX Runtime can load.
    """
    if ort is None:
        ort = _onnxruntime()
        cuda_check = cuda_check or cuda_libraries_load
    available = ort.get_available_providers()
    cuda_loads = CUDA in available and device != "cpu" and (cuda_check or (lambda: True))()
    providers = choose_providers(available, device, cuda_loads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(model_bytes, sess_options=options, providers=providers)
    except Exception as exc:
        if providers[0] != CUDA:
            raise ModelArtifactError(f"ONNX Runtime cannot load the model: {exc}") from exc
        log.warning("CUDA session failed (%s); falling back to CPU", exc)
        try:
            session = ort.InferenceSession(model_bytes, sess_options=options, providers=[CPU])
        except Exception as cpu_exc:
            raise ModelArtifactError(f"ONNX Runtime cannot load the model: {cpu_exc}") from cpu_exc
    active = session.get_providers()
    provider = CUDA if CUDA in active else CPU
    if providers[0] == CUDA and provider != CUDA:
        log.warning("CUDA listed but the session runs on CPU (no usable GPU)")
    elif provider == CPU:
        _note_cpu(device)
    return session, provider


@functools.cache
def _note_cpu(device: Device) -> None:
    # Once per process (a worker may open a session per served version).
    why = "as configured" if device == "cpu" else "no usable CUDA GPU on this host"
    log.info("ONNX Runtime session runs on the CPU (%s)", why)


@dataclass(frozen=True)
class LoadedModel:
    """A verified, warmed-up model: ``predict`` maps an (n, k) float matrix to n scores.

    ``input_dtype``, ``score_kind``, ``positive`` and ``threshold`` are the manifest's (see
    :class:`stream_infer.model.manifest.Manifest`); :meth:`rule` reads them.
    """

    name: str
    version: int
    feature_names: tuple[str, ...]
    provider: str
    session: Any
    input_name: str
    output_name: str
    input_dtype: InputDtype = "float32"
    score_kind: ScoreKind = "probability"
    positive: Positive = "high"
    threshold: float | None = None

    def predict(self, features: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.floating[Any]]:
        """The score of each row (columns follow ``feature_names``; the matrix is cast to the
        model's input dtype). A 2-D output gives its last column: a classifier's positive
        class probability, or the one column of an ``(n, 1)`` score."""
        rows = features.astype(self.input_dtype, copy=False)
        out = self.session.run([self.output_name], {self.input_name: rows})[0]
        scores: npt.NDArray[np.floating[Any]] = out[:, -1] if out.ndim == 2 else out
        return scores

    def rule(self, default_threshold: float) -> ScoreRule:
        """Which scores are positive (``default_threshold`` when the manifest records none)."""
        threshold = default_threshold if self.threshold is None else self.threshold
        return ScoreRule(threshold, self.positive, self.score_kind)

    def warm_up(self, batches: int = 3, batch_size: int = 512) -> float:
        """Run a few batches of zeros; returns seconds spent."""
        start = time.monotonic()
        for size in (1, batch_size)[: max(1, batches)]:
            self.predict(np.zeros((size, len(self.feature_names)), dtype=np.float32))
        for _ in range(max(0, batches - 2)):
            self.predict(np.zeros((batch_size, len(self.feature_names)), dtype=np.float32))
        return time.monotonic() - start


def check_signature(session: Any, model: ModelVersion, expected_features: Sequence[str]) -> None:
    """Refuse a session whose inputs/outputs disagree with the manifest or the code.

    Raises:
        ModelArtifactError: naming what differs.
    """
    manifest = model.manifest
    if tuple(expected_features) != manifest.feature_names:
        raise ModelArtifactError(
            f"{manifest.name} v{manifest.version} was trained on features "
            f"{list(manifest.feature_names)} but this code computes {list(expected_features)}"
        )
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != manifest.input_name:
        names = [i.name for i in inputs]
        raise ModelArtifactError(
            f"{manifest.name} v{manifest.version}: artifact inputs {names} != manifest input "
            f"{manifest.input_name!r}"
        )
    shape = inputs[0].shape
    width = shape[-1] if len(shape) == 2 else None
    dtype = ONNX_TYPES.get(str(inputs[0].type))
    if width != len(manifest.feature_names) or dtype != manifest.input_dtype:
        raise ModelArtifactError(
            f"{manifest.name} v{manifest.version}: artifact input {inputs[0].name} is "
            f"{inputs[0].type}{shape}, manifest needs "
            f"{manifest.input_dtype}[?, {len(manifest.feature_names)}]"
        )
    outputs = [o.name for o in session.get_outputs()]
    if manifest.output_name not in outputs:
        raise ModelArtifactError(
            f"{manifest.name} v{manifest.version}: output {manifest.output_name!r} not in {outputs}"
        )


def load_model(
    registry: Registry,
    name: str,
    expected_features: Sequence[str],
    *,
    version: int | None = None,
    device: Device = "auto",
    intra_op_threads: int = 1,
    warmup_batches: int = 3,
    ort: OrtModule | None = None,
) -> LoadedModel:
    """Load, verify and warm up a registered model (the champion when no version).

    Raises:
        ModelNotFoundError: nothing registered under that name/version.
        ModelArtifactError: hash or signature mismatch, or an unloadable artifact.
    """
    entry = registry.get(name, version)
    data = registry.verify(entry)
    session, provider = open_session(data, device, intra_op_threads, ort)
    check_signature(session, entry, expected_features)
    model = LoadedModel(
        name=entry.manifest.name,
        version=entry.manifest.version,
        feature_names=entry.manifest.feature_names,
        provider=provider,
        session=session,
        input_name=entry.manifest.input_name,
        output_name=entry.manifest.output_name,
        input_dtype=entry.manifest.input_dtype,
        score_kind=entry.manifest.score_kind,
        positive=entry.manifest.positive,
        threshold=entry.manifest.threshold,
    )
    seconds = model.warm_up(warmup_batches)
    log.info("loaded %s v%d on %s (warm-up %.1f ms)", name, model.version, provider, seconds * 1e3)
    return model
