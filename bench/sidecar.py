"""Sidecar benchmark: requests/s and p50/p99 at concurrency 1, 16 and 64, in one run.

Two servers, each in its own process, on the same model, features and machine:
- ``sidecar``: ``stream-infer serve`` (dynamic batching, orjson responses);
- ``baseline``: a plain FastAPI ``async def`` handler scoring each request on its own
  (:mod:`bench.baseline_app`).
Load comes from ``wrk`` (C, its own process; Debian package ``wrk``), so the client is not the
bottleneck. Each cell is the median of ``reps`` runs. Usage: ``python -m bench.sidecar [--quick]``.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.results_io import write_results
from stream_infer.config import load_settings
from stream_infer.kafka.broker import free_port
from stream_infer.process import child_env

CONCURRENCY = (1, 16, 64)
REQUEST = {
    "request_id": "bench",
    "inputs": {
        "transaction_id": "bench-1",
        "tx_datetime": "2018-05-01T10:00:00Z",
        "customer_id": "42",
        "terminal_id": "4242",
        "tx_amount": 57.5,
    },
    "parameters": {},
}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _wait_ready(url: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready")


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if m is None:
        raise ValueError(f"unparsed wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run: requests/s, p50 and p99 in ms, and non-2xx responses."""
    threads = min(connections, 2)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def run(quick: bool = False, reps: int = 3) -> list[dict[str, Any]]:
    """Benchmark both servers; returns one row per (server, concurrency) with medians."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    from stream_infer.training.workflow import run_training

    work = Path(tempfile.mkdtemp(prefix="bench-sidecar-"))
    settings = load_settings(
        model={"registry_dir": str(work / "registry")},
        features={"state_dir": str(work / "state")},
        metrics={"enabled": False},
        serve={"grpc_port": 0},  # HTTP is measured; never contend for the default port
    )
    run_training(settings, quick=True, echo=lambda _m: None)
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{json.dumps(REQUEST)}]]\n"
    )
    ports = {"sidecar": free_port(), "baseline": free_port()}
    env = child_env(settings)
    procs = {
        "sidecar": subprocess.Popen(
            [sys.executable, "-m", "stream_infer", "serve", "--port", str(ports["sidecar"])],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        "baseline": subprocess.Popen(
            [sys.executable, "-m", "bench.baseline_app", str(ports["baseline"])],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    }
    seconds = 2 if quick else 6  # wrk takes whole seconds
    reps = 1 if quick else reps
    rows: list[dict[str, Any]] = []
    try:
        for port in ports.values():
            _wait_ready(f"http://127.0.0.1:{port}")
        for conc in CONCURRENCY:
            # Interleave servers within each repetition so drift hits both alike.
            results: dict[str, list[dict[str, float]]] = {n: [] for n in ports}
            for _ in range(reps):
                for name, port in ports.items():
                    url = f"http://127.0.0.1:{port}/v1/models/fraud/predict"
                    results[name].append(run_wrk(url, script, conc, seconds))
            for name, runs in results.items():
                rows.append(
                    {
                        "server": name,
                        "concurrency": conc,
                        **{k: statistics.median(r[k] for r in runs) for k in runs[0]},
                        "reps": len(runs),
                    }
                )
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    base = {r["concurrency"]: r for r in rows if r["server"] == "baseline"}
    lines = [
        "| server | concurrency | requests/s | vs baseline | p50 ms | p99 ms | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["rps"] / base[r["concurrency"]]["rps"] if base.get(r["concurrency"]) else 0.0
        lines.append(
            f"| {r['server']} | {r['concurrency']} | {r['rps']:,.0f} | {ratio:.2f}x | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    rows = run(quick="--quick" in sys.argv)
    table = markdown(rows)
    print(table)
    write_results("sidecar-", rows, table)


if __name__ == "__main__":
    main()
