"""A broker child process: started in its own session, logged to a file, told apart from
other processes only by its own process id (never by name), stopped with SIGTERM then SIGKILL.

The Tansu broker (:mod:`stream_infer.kafka.broker`) and Apache Kafka
(:mod:`stream_infer.kafka.apache`) both run as one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Self

Readiness = Literal["ready", "exited", "timeout"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port_free(port: int, timeout_s: float) -> bool:
    """Whether nothing accepts connections on 127.0.0.1:``port`` within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.05)
    return False


class ChildProcess(ABC):
    """One child process at a time, its output appended to ``log_file``; ``scratch_dir``
    (removed by :meth:`cleanup` when ``own_dir``) holds what it writes.

    Use as a context manager or call :meth:`start` / :meth:`cleanup`.
    """

    def __init__(self, log_file: Path, scratch_dir: Path, *, own_dir: bool) -> None:
        self.log_file = log_file
        self._scratch_dir = scratch_dir
        self._own_dir = own_dir
        self._proc: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def start(self) -> Self:
        """Launch the process and block until it is ready."""

    @abstractmethod
    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the process it started (nothing when none runs)."""

    def restart(self) -> None:
        """Stop and start again (on the same ports)."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop it and remove the scratch directory if this object made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        """Whether the process it started is still running."""
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self, command: Sequence[str]) -> None:
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the caller must not kill it mid-drain
            )

    def _wait_answering(self, bootstrap: str, timeout_s: float, poll_s: float) -> Readiness:
        """Poll ``bootstrap`` until a metadata request names a broker (``ready``), the child
        exits (``exited``) or ``timeout_s`` passes (``timeout``)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return "exited"
            try:
                if admin.list_topics(timeout=1.0).brokers:
                    return "ready"
            except KafkaException:  # the listener is not up yet
                pass
            time.sleep(poll_s)
        return "timeout"

    def tail_log(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the log ("" when it cannot be read)."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _terminate(self, timeout_s: float) -> bool:
        """SIGTERM (a controlled shutdown), then SIGKILL, to the process group it started;
        whether one was still running."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return False
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)
        except ProcessLookupError:
            pass
        return True

    def kill(self) -> None:
        """SIGKILL the process group it started (a crash: no controlled shutdown)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait(timeout=30)
