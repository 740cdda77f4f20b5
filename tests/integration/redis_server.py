"""A private ``redis-server`` that a test may pause, for outage tests; also configured as
production runs it (TLS, ACL users, cluster mode: ``extra_args``, ``tls``; see redis_secure.py).

The shared Redis on 127.0.0.1:6379 serves every test at once, so it is never paused; a test that
needs an outage starts its own server here on a free loopback port, in its own temp dir, with
persistence off. ``pause()`` stops the process (SIGSTOP): the kernel still accepts connections
on its socket, but nothing answers, which is what a hung or overloaded Redis looks like to a
client (calls end by the client's socket timeout, never by a refused connection).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

SHARED_REDIS_PORT = 6379
_START_ATTEMPTS = 3


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, or None when it is not installed."""
    return shutil.which("redis-server")


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ServerTls:
    """A TLS-only server's files: its certificate and key, and the CA its clients' certificates
    must chain to (``--tls-auth-clients``: ``yes`` requires one, ``optional`` checks one if
    sent)."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    auth_clients: str = "optional"


class RedisServer:
    """A ``redis-server`` child on a free loopback port, killed on exit (resumed first if paused).

    ``config_file`` (first) and ``extra_args`` (last: ``--user``, ``--cluster-enabled yes``,
    ``--sentinel``) go to the command line; with ``tls`` the port is a TLS port and there is
    no plain one; ``client_kwargs`` are what the readiness PING needs (credentials, TLS files).

    Raises (on enter):
        FileNotFoundError: ``redis-server`` is not installed.
        RuntimeError: the server did not answer PING within ``startup_timeout_s``.
    """

    def __init__(
        self,
        startup_timeout_s: float = 15.0,
        extra_args: Sequence[str] = (),
        tls: ServerTls | None = None,
        client_kwargs: dict[str, Any] | None = None,
        config_file: Path | None = None,
    ) -> None:
        self._startup_timeout_s = startup_timeout_s
        self._extra_args = list(extra_args)
        self._tls = tls
        self._client_kwargs = dict(client_kwargs or {})
        self._config = [] if config_file is None else [str(config_file)]
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._paused = False

    @property
    def url(self) -> str:
        scheme = "rediss" if self._tls is not None else "redis"
        return f"{scheme}://127.0.0.1:{self._port}/0"

    @property
    def workdir(self) -> Path:
        assert self._tmp is not None
        return Path(self._tmp.name)

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int:
        return self._running().pid

    @property
    def is_paused(self) -> bool:
        return self._paused

    def __enter__(self) -> RedisServer:
        binary = redis_server_binary()
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        self._tmp = tempfile.TemporaryDirectory(prefix="own-redis-")
        try:
            self._start(binary, Path(self._tmp.name))
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): clients connect but get no answer until :meth:`resume`."""
        proc = self._running()
        if self._port == SHARED_REDIS_PORT:  # pragma: no cover - a free port is never 6379
            raise RuntimeError("refusing to pause the shared Redis on 6379")
        os.kill(proc.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT); a no-op when it is not paused."""
        if self._paused:
            os.kill(self._running().pid, signal.SIGCONT)
            self._paused = False

    @contextmanager
    def outage(self) -> Iterator[None]:
        """Paused for as long as the ``with`` block runs, resumed however it ends."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    @contextmanager
    def paused(self, seconds: float) -> Iterator[None]:
        """Paused for at least ``seconds`` (longer if the block takes longer), then resumed.

        The wait is the outage's length, the thing under test, not a guess at readiness.
        """
        until = time.monotonic() + seconds
        with self.outage():
            yield
            remaining = until - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("the redis-server is not running")
        return self._proc

    def _start(self, binary: str, workdir: Path) -> None:
        # The port is free when probed but could be taken before redis binds it: try again then.
        last_log = ""
        for _ in range(_START_ATTEMPTS):
            self._port = _free_loopback_port()
            log = workdir / f"redis-{self._port}.log"
            ports = ["--port", str(self._port)]
            if self._tls is not None:
                ports = [
                    "--port", "0",
                    "--tls-port", str(self._port),
                    "--tls-cert-file", str(self._tls.cert_file),
                    "--tls-key-file", str(self._tls.key_file),
                    "--tls-ca-cert-file", str(self._tls.ca_file),
                    "--tls-auth-clients", self._tls.auth_clients,
                ]  # fmt: skip
            with log.open("wb") as fh:
                self._proc = subprocess.Popen(
                    [
                        binary,
                        *self._config,  # a config file must come first
                        *ports,
                        "--bind", "127.0.0.1",
                        "--dir", str(workdir),
                        "--save", "",
                        "--appendonly", "no",
                        "--daemonize", "no",
                        *self._extra_args,
                    ],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
            if self._wait_ready():
                return
            last_log = log.read_text(errors="replace")[-2000:]
            self._kill()
        raise RuntimeError(f"redis-server did not start: {last_log}")

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + self._startup_timeout_s
        client = redis.Redis(
            host="127.0.0.1",
            port=self._port,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            **self._client_kwargs,
        )
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.RedisError:
                    pass
                time.sleep(0.02)
            return False
        finally:
            client.close()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            if self._paused:
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(30)
        self._paused = False

    def _stop(self) -> None:
        try:
            self._kill()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
