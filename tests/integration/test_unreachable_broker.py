"""``KAFKA_BOOTSTRAP=127.0.0.1:1 stream-infer worker``: a real process that ends within twice
``kafka.startup_timeout_s`` with one clear message, and no transport-warning spam."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TIMEOUT_S = 4.0


@pytest.mark.parametrize("command", ["worker", "labels"])
def test_an_unreachable_broker_ends_the_process_with_one_message(
    command: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_INFER_")}
    # Port 1 on loopback: nothing listens, every connect is refused at once.
    env |= {
        "KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "STREAM_INFER_KAFKA__STARTUP_TIMEOUT_S": str(TIMEOUT_S),
        "STREAM_INFER_METRICS__ENABLED": "false",
        "STREAM_INFER_FEATURES__STATE_DIR": str(tmp_path / "state"),
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_infer", command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=2 * TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"still running after {2 * TIMEOUT_S}s:\n{out[-3000:]}")
    assert time.monotonic() - started < 2 * TIMEOUT_S
    assert proc.returncode != 0
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert errors[0].startswith(
        f"error: {command}: no Kafka broker answered at 127.0.0.1:1 within "
        f"kafka.startup_timeout_s={TIMEOUT_S:g}s (last error: _TRANSPORT: "
    ), out
    assert "Connection refused" in errors[0]  # the cause, once
    assert out.count("Connection refused") == 1, out  # no librdkafka line per retry
