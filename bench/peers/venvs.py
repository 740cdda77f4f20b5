"""The peers' virtual environments, built on first use under ``var/bench-venvs/`` (gitignored).

Each environment holds the peer at the pinned release line and the CPU ``onnxruntime`` of the
same version as this project's, so every server runs the model with the same kernels. A
stamp file records what was installed: an environment is rebuilt only when its requirements
change. Installing needs the package index (minutes, once).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "var" / "bench-venvs"
#: What each peer's environment holds, besides onnxruntime.
PEERS = {"mlserver": ["mlserver>=1.7,<1.8"], "bentoml": ["bentoml>=1.4,<1.5"]}
STAMP = ".bench-requirements"
INSTALL_TIMEOUT_S = 1800


class PeerUnavailableError(RuntimeError):
    """The peer's environment could not be built (the message says why)."""


def onnxruntime_requirement() -> str:
    """The CPU ``onnxruntime`` at this project's ONNX Runtime version."""
    for dist in ("onnxruntime-gpu", "onnxruntime"):
        try:
            return f"onnxruntime=={version(dist)}"
        except PackageNotFoundError:
            continue
    return "onnxruntime"


def requirements(peer: str) -> list[str]:
    return [*PEERS[peer], onnxruntime_requirement()]


def ensure(peer: str, echo: bool = True) -> Path:
    """The ``bin/`` directory of ``peer``'s environment, built if missing or stale.

    Raises:
        PeerUnavailableError: the environment could not be created or installed.
    """
    venv = ROOT / peer
    wanted = "\n".join(requirements(peer))
    stamp = venv / STAMP
    if stamp.exists() and stamp.read_text() == wanted:
        return venv / "bin"
    if echo:
        print(f"bench.sidecar: building {venv} ({', '.join(requirements(peer))})", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", *requirements(peer)],
    ]
    for step in steps:
        try:
            done = subprocess.run(
                step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerUnavailableError(f"{' '.join(step[:3])}: {exc}") from exc
        if done.returncode != 0:
            tail = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()][-3:]
            raise PeerUnavailableError(f"{' '.join(step[:3])} failed: {' / '.join(tail)}")
    stamp.write_text(wanted)
    return venv / "bin"
