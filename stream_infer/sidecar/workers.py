"""``stream-infer serve --workers N``: N sidecar processes behind one HTTP port.

The parent binds ``serve.host:serve.port`` once and starts N children (``spawn``: nothing of
the parent's threads or gRPC state is inherited), each a whole sidecar (its own serving set,
batchers, metrics registry and event loop) accepting on that shared socket; the kernel hands
each new connection to whichever child accepts first. The gRPC port is bound by every child
with ``SO_REUSEPORT``, which spreads connections across them.

They live and stop together: SIGTERM or SIGINT to the parent stops every child (SIGTERM,
then SIGKILL after ``GRACE_S``); a child that exits on its own (crashed, killed, start-up
failed) stops the others, and the parent exits non-zero. ``/metrics`` is per process: a
scrape sees the child that answered it (scrape each pod's children through their own
ports, or run one worker per pod, to see all of them).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from stream_infer.config import Settings
from stream_infer.errors import FatalError

log = logging.getLogger(__name__)
#: Seconds a child has to stop after SIGTERM before it is killed.
GRACE_S = 30.0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one), to share.

    Raises:
        FatalError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FatalError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _child(settings: Settings, sock: socket.socket, log_level: int) -> None:
    """One worker process: the sidecar on the shared socket (exit 2 on a fatal start-up)."""
    import sys

    from stream_infer.sidecar.app import run

    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(settings, sockets=[sock], grpc_reuse_port=True)
    except FatalError as exc:
        log.error("%s", exc)
        sys.exit(2)


def _stop(children: list[BaseProcess]) -> None:
    for child in children:
        if child.is_alive() and child.pid is not None:
            child.terminate()
    for child in children:
        child.join(GRACE_S)
        if child.is_alive():
            log.warning("worker %s did not stop in %.0fs; killing it", child.pid, GRACE_S)
            child.kill()
            child.join()


def run_workers(settings: Settings, workers: int) -> int:
    """Serve with ``workers`` processes until a signal or a child's exit; returns the exit
    code for the CLI (0 after a signal, 1 when a child exited on its own).

    Raises:
        FatalError: the HTTP port cannot be bound.
    """
    sock = bind(settings.serve.host, settings.serve.port)
    ctx = multiprocessing.get_context("spawn")
    children: list[BaseProcess] = [
        ctx.Process(
            target=_child,
            args=(settings, sock, logging.getLogger().level),
            name=f"sidecar-worker-{i}",
        )
        for i in range(workers)
    ]
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.start()
        sock.close()  # the children hold it now
        host, port = settings.serve.host, settings.serve.port
        pids = ", ".join(str(c.pid) for c in children)
        log.info("sidecar on %s:%s with %d workers (pids %s)", host, port, workers, pids)
        exited: list[BaseProcess] = []
        while not stopping.is_set() and not exited:
            wait([c.sentinel for c in children], timeout=0.2)
            exited = [c for c in children if not c.is_alive()]
        if exited:
            codes = ", ".join(f"{c.pid}: {c.exitcode}" for c in exited)
            log.error("a sidecar worker exited (%s); stopping the others", codes)
        _stop(children)
        return 1 if exited and not stopping.is_set() else 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
