"""Sidecar benchmark: requests/s and p50/p99 at concurrency 1, 16 and 64, in one run.

Servers, each in its own process(es), on the same model and machine:

- ``sidecar``: ``stream-infer serve`` (turn batching on the loop, hot routes outside FastAPI);
- ``baseline``: a plain FastAPI ``async def`` handler doing the same work per request (the
  same validation, read-only features and model call; :mod:`bench.baseline_app`);
- ``sidecar --workers 2``: two sidecar processes on one port;
- the sidecar's Open Inference Protocol, over HTTP (JSON) and gRPC (:mod:`bench.sidecar_grpc`),
  and ``grpc floor``: a ``grpc.aio`` server answering a constant (what gRPC itself costs);
- ``mlserver`` and ``bentoml`` (adaptive batching) serving the same ONNX model from their own
  environments (:mod:`bench.peers`), compared with the sidecar's protocol row: they get
  tensors, not transactions, so they read no features.

HTTP load comes from ``wrk`` (:mod:`bench.sidecar_load`). Each cell is the median of ``reps``
runs; the sidecar and the baseline alternate within each repetition so that drift on the
shared machine hits both alike. A peer that cannot be installed or started gets a row saying
why. Usage: ``python -m bench.sidecar [--quick] [--no-peers]``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]  # stubs: types-psutil

from bench.memory import process_tree, tree_cpu_s
from bench.results_io import write_results
from bench.sidecar_grpc import run_grpc
from bench.sidecar_load import ROW, require_wrk, run_wrk, static_script, v1_script, v2_body
from stream_infer.config import Settings, load_settings
from stream_infer.kafka.broker import free_port
from stream_infer.process import child_env

CONCURRENCY = (1, 16, 64)
PREDICT = "/v1/models/fraud/predict"
INFER = "/v2/models/fraud/infer"
Measure = Callable[[int], dict[str, float]]


def _wait_ready(url: str, path: str = "/v2/health/ready", timeout_s: float = 120.0) -> None:
    """Until ``path`` answers 200 on 10 fresh connections in a row (every worker ready)."""
    deadline = time.monotonic() + timeout_s
    streak = 0
    while streak < 10:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready")
        try:
            ok = httpx.get(f"{url}{path}", timeout=1).status_code == 200
        except httpx.TransportError:
            ok = False
        streak = streak + 1 if ok else 0
        if not ok:
            time.sleep(0.1)


def _wait_grpc(target: str, timeout_s: float = 60.0) -> None:
    import grpc

    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)


def _spawn(args: list[str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            env=child_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _measure(
    cells: dict[tuple[str, str], Measure], reps: int, note: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Each (server, api) at each concurrency, ``reps`` times, interleaved (in reverse order
    every other repetition); medians. One
    unrecorded run at concurrency 16 first warms every server up (caches, lazy imports,
    connection set-up), so that no cell measures a cold start."""
    for measure in cells.values():
        measure(16)
    rows: list[dict[str, Any]] = []
    for conc in CONCURRENCY:
        runs: dict[tuple[str, str], list[dict[str, float]]] = {k: [] for k in cells}
        for rep in range(reps):
            order = list(cells.items())
            for key, measure in order if rep % 2 == 0 else order[::-1]:  # ABBA: drift cancels
                runs[key].append(measure(conc))
        for (server, api), results in runs.items():
            row: dict[str, Any] = {"server": server, "api": api, "concurrency": conc}
            row.update({k: statistics.median(r[k] for r in results) for k in results[0]})
            row["reps"] = len(results)
            row["note"] = (note or {}).get(server, "")
            rows.append(row)
    return rows


def _unavailable(server: str, api: str, why: str) -> list[dict[str, Any]]:
    return [
        {"server": server, "api": api, "concurrency": c, "rps": 0.0, "p50_ms": 0.0}
        | {"p99_ms": 0.0, "non_2xx": 0.0, "cpu_us": 0.0, "reps": 0, "note": f"not run: {why}"}
        for c in CONCURRENCY
    ]


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants."""
    try:
        return tree_cpu_s(process_tree(psutil.Process(pid)))
    except psutil.NoSuchProcess:
        return 0.0


def _costed(measure: Measure, pid: int, seconds: int) -> Measure:
    """``measure`` plus the server's CPU time per answered request (``cpu_us``): what a
    request costs the server whatever the client, so HTTP and gRPC, or two stacks, compare
    even where the client's own cost differs."""

    def run(conc: int) -> dict[str, float]:
        before = _cpu_s(pid)
        result = measure(conc)
        answered = result["rps"] * seconds
        result["cpu_us"] = (_cpu_s(pid) - before) / answered * 1e6 if answered else 0.0
        return result

    return run


def _wrk(url: str, script: Path, seconds: int, pid: int) -> Measure:
    return _costed(lambda conc: run_wrk(url, script, conc, seconds), pid, seconds)


def _peers(work: Path, model: Path, seconds: int, reps: int) -> list[dict[str, Any]]:
    from bench.peers.servers import start_bentoml, start_mlserver
    from bench.peers.venvs import PeerUnavailableError

    tensors = static_script(work / "v2.lua", v2_body())
    bento = static_script(work / "bento.lua", {"rows": [ROW]})
    rows: list[dict[str, Any]] = []
    for name, start, path, script, api in (
        ("mlserver", start_mlserver, INFER, tensors, "v2 http"),
        ("bentoml", start_bentoml, "/predict", bento, "http"),
    ):
        try:
            peer = start(model, work)
        except PeerUnavailableError as exc:
            print(f"bench.sidecar: {name} not run: {exc}", flush=True)
            rows += _unavailable(name, api, str(exc))
            continue
        try:
            measure = _wrk(peer.url + path, script, seconds, peer.proc.pid)
            rows += _measure({(name, api): measure}, reps)
        finally:
            peer.stop()
    return rows


def run(quick: bool = False, reps: int = 3, peers: bool = True) -> list[dict[str, Any]]:
    """Benchmark every server; one row per (server, api, concurrency), medians.

    Raises:
        WrkMissingError: wrk is not installed (the message says how to get it).
    """
    require_wrk()
    from stream_infer.training.workflow import run_training

    work = Path(tempfile.mkdtemp(prefix="bench-sidecar-"))
    grpc_port = free_port()
    settings = load_settings(
        model={"registry_dir": str(work / "registry")},
        features={"state_dir": str(work / "state")},
        metrics={"enabled": False},
        serve={"grpc_port": grpc_port},
    )
    run_training(settings, quick=True, echo=lambda _m: None)
    model = next((work / "registry").glob("*/*/model.onnx"))
    v1 = v1_script(work / "v1.lua")
    v2 = static_script(work / "v2.lua", v2_body())
    seconds = 2 if quick else 6  # wrk takes whole seconds
    reps = 1 if quick else reps
    ports = {"sidecar": free_port(), "baseline": free_port()}
    serve = ["stream_infer", "serve", "--port"]
    procs = [
        _spawn([*serve, str(ports["sidecar"])], settings, work / "sidecar.log"),
        _spawn(["bench.baseline_app", str(ports["baseline"])], settings, work / "baseline.log"),
    ]
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    pid = {"sidecar": procs[0].pid, "baseline": procs[1].pid}

    def grpc(conc: int) -> dict[str, float]:
        return run_grpc(f"127.0.0.1:{grpc_port}", conc, seconds)

    rows: list[dict[str, Any]] = []
    try:
        for u in url.values():
            _wait_ready(u)
        rows += _measure(
            {
                ("sidecar", "v1"): _wrk(url["sidecar"] + PREDICT, v1, seconds, pid["sidecar"]),
                ("baseline", "v1"): _wrk(url["baseline"] + PREDICT, v1, seconds, pid["baseline"]),
            },
            reps,
        )
        rows += _measure(
            {
                ("sidecar", "v2 http"): _wrk(url["sidecar"] + INFER, v2, seconds, pid["sidecar"]),
                ("sidecar", "v2 grpc"): _costed(grpc, pid["sidecar"], seconds),
            },
            reps,
        )
    finally:
        for proc in procs:
            _stop(proc)
    floor_port = free_port()
    floor = _spawn(["bench.sidecar_grpc", "--floor", str(floor_port)], settings, work / "floor.log")
    try:
        _wait_grpc(f"127.0.0.1:{floor_port}")

        def constant(conc: int) -> dict[str, float]:
            return run_grpc(f"127.0.0.1:{floor_port}", conc, seconds)

        rows += _measure({("grpc floor", "v2 grpc"): _costed(constant, floor.pid, seconds)}, reps)
    finally:
        _stop(floor)
    workers_port = free_port()
    no_grpc = settings.model_copy(
        update={"serve": settings.serve.model_copy(update={"grpc_port": 0})}
    )
    two = _spawn([*serve, str(workers_port), "--workers", "2"], no_grpc, work / "workers.log")
    try:
        _wait_ready(f"http://127.0.0.1:{workers_port}")
        target = f"http://127.0.0.1:{workers_port}{PREDICT}"
        measure = _wrk(target, v1, seconds, two.pid)
        rows += _measure({("sidecar --workers 2", "v1"): measure}, reps)
    finally:
        _stop(two)
    if peers:
        rows += _peers(work, model, seconds, reps)
    return rows


#: What each row is compared with: (server, api) of the reference at the same concurrency.
REFERENCE = {
    "v1": ("baseline", "v1"),
    "v2 http": ("sidecar", "v2 http"),
    "v2 grpc": ("sidecar", "v2 http"),
    "http": ("sidecar", "v2 http"),
}


def markdown(rows: list[dict[str, Any]]) -> str:
    by = {(r["server"], r["api"], r["concurrency"]): r for r in rows}
    lines = [
        "| server | api | concurrency | requests/s | ratio | vs | p50 ms | p99 ms | non-2xx "
        "| server CPU µs/req |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ref_key = REFERENCE.get(r["api"], ("baseline", "v1"))
        ref = by.get((*ref_key, r["concurrency"]))
        ratio = r["rps"] / ref["rps"] if ref and ref["rps"] else 0.0
        vs = " ".join(ref_key)
        if r.get("note", "").startswith("not run"):
            lines.append(
                f"| {r['server']} | {r['api']} | {r['concurrency']} | {r['note']} |" + " |" * 6
            )
            continue
        lines.append(
            f"| {r['server']} | {r['api']} | {r['concurrency']} | {r['rps']:,.0f} | "
            f"{ratio:.2f}x | {vs} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']:.0f} | "
            f"{r.get('cpu_us', 0.0):,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    rows = run(quick="--quick" in sys.argv, peers="--no-peers" not in sys.argv)
    table = markdown(rows)
    print(table)
    write_results("sidecar-", rows, table)


if __name__ == "__main__":
    main()
