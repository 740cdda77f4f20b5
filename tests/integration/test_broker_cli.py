"""`stream-infer broker start`: the broker answers once its bootstrap is printed, and SIGTERM
stops it cleanly (exit 0, port released)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient

from stream_infer.kafka.broker import free_port


@pytest.mark.parametrize("kind", [pytest.param("apache", marks=pytest.mark.apache), "tansu"])
def test_broker_start_serves_until_sigterm(kind: str) -> None:
    port = free_port()
    command = ["broker", "start", "--kind", kind, "--port", str(port)]
    with subprocess.Popen(
        [sys.executable, "-m", "stream_infer", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            bootstrap = proc.stdout.readline().strip()  # printed only once the broker answers
            assert bootstrap == f"127.0.0.1:{port}", proc.stderr.read()
            metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
            assert metadata.brokers
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(90) == 0, proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the broker still listens"
