"""Start MLServer or BentoML on a free loopback port, serving the benchmark's ONNX model with
adaptive batching, from its own environment (:mod:`bench.peers.venvs`).

Both get the batching knobs the sidecar has: at most :data:`MAX_BATCH` rows per model call
and, for MLServer, a :data:`MAX_BATCH_TIME_S` window (its adaptive batcher waits up to that
long for company; BentoML adapts its own window within ``max_latency_ms``). MLServer runs
inference in its server process (``parallel_workers: 0``: the model is far cheaper than a
hop to an inference-pool process), BentoML with one worker; neither has a feature store to
read, so their rows compare with the sidecar's Open Inference Protocol row (tensor in,
tensor out), not with ``/v1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.peers.venvs import PeerUnavailableError, ensure
from stream_infer.kafka.broker import free_port

HERE = Path(__file__).resolve().parent
MAX_BATCH = 64
MAX_BATCH_TIME_S = 0.001
START_TIMEOUT_S = 180.0


@dataclass
class Peer:
    """A running peer: where to send requests, and how to stop it."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait(peer: Peer, ready_path: str) -> Peer:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if peer.proc.poll() is not None:
            tail = peer.log.read_text(errors="replace").strip().splitlines()[-3:]
            raise PeerUnavailableError(f"{peer.name} exited at start-up: {' / '.join(tail)}")
        try:
            if httpx.get(f"{peer.url}{ready_path}", timeout=1).status_code == 200:
                return peer
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    peer.stop()
    raise PeerUnavailableError(f"{peer.name} not ready within {START_TIMEOUT_S:.0f}s")


def _env() -> dict[str, str]:
    # Keep this project's settings and virtual environment out of the peer's process.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_INFER_", "VIRTUAL"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_mlserver(model: Path, work: Path) -> Peer:
    """MLServer 1.7 on a free port, ready.

    Raises:
        PeerUnavailableError: its environment or its start-up failed.
    """
    bin_dir = ensure("mlserver")
    root = work / "mlserver"
    (root / "fraud").mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "host": "127.0.0.1",
        "parallel_workers": 0,
        "debug": False,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": "fraud",
        "implementation": "mlserver_runtime.FraudOnnx",
        "max_batch_size": MAX_BATCH,
        "max_batch_time": MAX_BATCH_TIME_S,
        "parameters": {"uri": str(model)},
    }
    (root / "fraud" / "model-settings.json").write_text(json.dumps(model_settings))
    log = work / "mlserver.log"
    env = _env() | {"PYTHONPATH": str(HERE)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(bin_dir / "mlserver"), "start", str(root)],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return _wait(Peer("mlserver", f"http://127.0.0.1:{port}", proc, log), "/v2/models/fraud/ready")


def start_bentoml(model: Path, work: Path) -> Peer:
    """BentoML 1.4 on a free port, ready.

    Raises:
        PeerUnavailableError: its environment or its start-up failed.
    """
    bin_dir = ensure("bentoml")
    port = free_port()
    log = work / "bentoml.log"
    env = _env() | {
        "BENCH_ONNX_MODEL": str(model),
        "BENTOML_HOME": str(work / "bentoml-home"),
    }
    command = [str(bin_dir / "bentoml"), "serve", "bento_service:Fraud"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=HERE,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return _wait(Peer("bentoml", f"http://127.0.0.1:{port}", proc, log), "/readyz")
