"""Load for the sidecar benchmark: ``wrk`` for HTTP, and the request bodies it sends.

``wrk`` (C, its own process, Debian package ``wrk``) keeps the client off the server's
critical path. The ``/v1`` script sends a different transaction each time: customers drawn
from :data:`CUSTOMERS` (so a batch holds many customers, as real traffic does; one customer
repeated would be scored in rounds, one per repeat, see
:func:`stream_infer.sidecar.scoring.rounds_of`), its own ``transaction_id`` and amount.
Every server on a path gets the same script. The tensor scripts (Open Inference Protocol,
BentoML) send one ``[1, 15]`` FP32 row.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from stream_infer.features.definitions import N_FEATURES

#: Distinct customers (and terminals, mod 1000) the ``/v1`` script cycles through.
CUSTOMERS = 5000
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
#: A feature row (the model takes any 15 floats; the values do not change the cost).
ROW = [57.5, 0.0, 0.0, 2.0, 60.0, 5.0, 55.0, 12.0, 51.0, 3.0, 0.0, 20.0, 0.05, 80.0, 0.02]

_V1_SCRIPT = """
local n = 0
local tid = 0
function setup(thread) thread:set("tid", tid); tid = tid + 1 end
function request()
  n = n + 1
  local c = (n * 7919 + (tid or 0) * 104729) %% %(customers)d
  local body = string.format('{"request_id":"r%%d","inputs":{"transaction_id":"b-%%d-%%d",'
    .. '"tx_datetime":"2018-05-01T10:00:00Z","customer_id":"%%d","terminal_id":"%%d",'
    .. '"tx_amount":%%d.5},"parameters":{}}', n, tid or 0, n, c, c %% 1000, 10 + n %% 200)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


class WrkMissingError(RuntimeError):
    """``wrk`` is not on PATH."""


def require_wrk() -> None:
    """Raises WrkMissingError, saying how to install it, when ``wrk`` is missing."""
    if shutil.which("wrk") is None:
        raise WrkMissingError(
            "bench.sidecar drives HTTP with wrk, which is not installed: "
            "`apt-get install -y wrk` (Debian/Ubuntu package wrk), or build it from its "
            "source and put it on PATH"
        )


def v1_script(path: Path) -> Path:
    """The ``/v1`` predict script (a new transaction per request), written to ``path``."""
    path.write_text(_V1_SCRIPT % {"customers": CUSTOMERS})
    return path


def v2_body() -> dict[str, object]:
    """One Open Inference Protocol request: a ``[1, 15]`` FP32 row, JSON."""
    return {
        "inputs": [{"name": "input", "shape": [1, N_FEATURES], "datatype": "FP32", "data": ROW}]
    }


def static_script(path: Path, body: object) -> Path:
    """A script POSTing the same JSON ``body`` every time, written to ``path``."""
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{json.dumps(body)}]==]\n"  # a long string that "]]" cannot end
    )
    return path


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if m is None:
        raise ValueError(f"unparsed wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _field(pattern: str, out: str) -> str:
    m = re.search(pattern, out)
    if m is None:
        raise ValueError(f"wrk output without {pattern!r}:\n{out}")
    return m.group(1)


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run: requests/s, p50 and p99 in ms, and non-2xx responses (socket errors
    count as non-2xx too).

    Raises:
        subprocess.CalledProcessError: wrk failed.
    """
    threads = min(connections, 2)
    load = [f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    out = subprocess.run(
        ["wrk", *load, "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    failed = float(errors.group(1)) if errors else 0.0
    if sockets:
        failed += sum(float(g) for g in sockets.groups())
    return {
        "rps": float(_field(r"Requests/sec:\s+([\d.]+)", out)),
        "p50_ms": _ms(_field(r"\s50%\s+(\S+)", out)),
        "p99_ms": _ms(_field(r"\s99%\s+(\S+)", out)),
        "non_2xx": failed,
    }
