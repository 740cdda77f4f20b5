"""A host without a usable CUDA GPU: one INFO line, never ONNX Runtime's red library error."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from stream_infer.model.session import CPU, CUDA, cuda_libraries_load, open_session


class _ListsCuda:
    """onnxruntime-gpu as installed on a CPU host: CUDA listed, sessions come up on CPU."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def get_available_providers(self) -> list[str]:
        return [CUDA, CPU]

    def SessionOptions(self) -> Any:
        return type("Opts", (), {})()

    def InferenceSession(self, _model: bytes, sess_options: Any = None, providers: Any = ()) -> Any:
        self.asked.append(list(providers))
        return type("S", (), {"get_providers": lambda _self: [CPU]})()


def test_cuda_is_not_asked_for_when_its_libraries_do_not_load() -> None:
    fake = _ListsCuda()
    _session, provider = open_session(b"m", "auto", ort=fake, cuda_check=lambda: False)
    assert provider == CPU
    assert fake.asked == [[CPU]]


def test_cuda_is_asked_for_when_listed_and_loadable() -> None:
    fake = _ListsCuda()
    open_session(b"m", "auto", ort=fake, cuda_check=lambda: True)
    assert fake.asked[0] == [CUDA, CPU]


def test_device_cpu_never_probes_cuda() -> None:
    fake = _ListsCuda()

    def probe() -> bool:
        raise AssertionError("probed")

    open_session(b"m", "cpu", ort=fake, cuda_check=probe)
    assert fake.asked == [[CPU]]


@pytest.mark.skipif(cuda_libraries_load(), reason="this host has a usable CUDA GPU")
def test_a_real_start_on_this_cpu_host_logs_one_info_line_and_no_ort_error() -> None:
    # A fresh interpreter: ONNX Runtime writes its error to the process's stderr (C++), and
    # the INFO line is once per process.
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')\n"
        "from skl2onnx import to_onnx\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "import numpy as np\n"
        "x = np.random.default_rng(0).random((20, 3)).astype(np.float32)\n"
        "m = to_onnx(LogisticRegression().fit(x, (x[:, 0] > .5).astype(int)), x[:1],\n"
        "            options={'zipmap': False}).SerializeToString()\n"
        "from stream_infer.model.session import open_session\n"
        "for _ in range(2):\n"
        "    s, p = open_session(m, 'auto')\n"
        "print(p)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == CPU
    lines = [ln for ln in done.stderr.splitlines() if "runs on the CPU" in ln]
    assert lines == ["INFO ONNX Runtime session runs on the CPU (no usable CUDA GPU on this host)"]
    assert "Failed to load library" not in done.stderr
    assert "libonnxruntime_providers_cuda" not in done.stderr
