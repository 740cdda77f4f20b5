"""gRPC load for the sidecar benchmark: closed-loop ``ModelInfer`` calls at a concurrency.

``wrk`` speaks HTTP/1.1 only, so the gRPC rows are driven by this client: ``concurrency``
coroutines on ``grpc.aio`` (C core), each sending one ``[1, 15]`` FP32 row
(``raw_input_contents``, as ``tritonclient.grpc`` sends it) and waiting for the answer, for
``seconds``; over :data:`PROCESSES` processes when the concurrency allows, as ``wrk`` uses
two threads. The client is Python and shares the machine's cores with the server, so it
costs the server more CPU than wrk does: the HTTP-vs-gRPC rows bound gRPC's advantage from
below. Run as ``python -m bench.sidecar_grpc HOST:PORT CONCURRENCY SECONDS``: prints one
JSON line of latencies (ms) and failures. ``python -m bench.sidecar_grpc --floor PORT`` serves
a constant answer (the ``grpc floor`` row: gRPC's own cost, with no model and no batcher).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import numpy as np

from bench.sidecar_load import ROW

PROCESSES = 2


def _request(model: str) -> Any:
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="input", datatype="FP32")
    tensor.shape.extend([1, len(ROW)])
    request.raw_input_contents.append(np.asarray([ROW], dtype=np.float32).tobytes())
    return request


async def _load(target: str, concurrency: int, seconds: float) -> dict[str, Any]:
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    request = _request("fraud")
    latencies: list[float] = []
    failures = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        await stub.ModelInfer(request)  # connected and warm before the clock starts
        deadline = time.monotonic() + seconds

        async def loop() -> None:
            nonlocal failures
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    await stub.ModelInfer(request)
                except grpc.aio.AioRpcError:
                    failures += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"latencies_ms": latencies, "failures": failures, "seconds": elapsed}


def run_grpc(target: str, concurrency: int, seconds: int) -> dict[str, float]:
    """Requests/s, p50 and p99 (ms) and failed calls of ``concurrency`` closed loops.

    Raises:
        subprocess.CalledProcessError: a client process failed.
    """
    procs = min(PROCESSES, concurrency)
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.sidecar_grpc", target, str(share), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for share in shares
    ]
    parts = []
    for child in children:
        out, _ = child.communicate(timeout=seconds + 60)
        if child.returncode:
            raise subprocess.CalledProcessError(child.returncode, child.args, out)
        parts.append(json.loads(out))
    latencies = np.concatenate([np.asarray(p["latencies_ms"]) for p in parts])
    return {
        "rps": sum(len(p["latencies_ms"]) / p["seconds"] for p in parts),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "non_2xx": float(sum(p["failures"] for p in parts)),
    }


async def _floor(port: int) -> None:
    """A ``grpc.aio`` server whose ``ModelInfer`` answers a constant: what gRPC itself costs
    per call in Python on this machine, under the sidecar's row."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    answer = service_pb2.ModelInferResponse(model_name="fraud", model_version="1")
    answer.raw_output_contents.append(np.zeros((1, 2), dtype=np.float32).tobytes())

    class Constant(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
        async def ModelInfer(self, _request: Any, _context: Any) -> Any:
            return answer

    server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Constant(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    if sys.argv[1] == "--floor":
        asyncio.run(_floor(int(sys.argv[2])))
        return
    target, concurrency, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(asyncio.run(_load(target, concurrency, seconds))))


if __name__ == "__main__":
    main()
