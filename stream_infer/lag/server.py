"""``stream-infer lag serve``: the sampler thread and one small HTTP server for
``GET /metrics`` (Prometheus text, the lag collector's own registry) and ``GET /status``
(stream_infer.lag.page). Standard library ``http.server``: two routes need no framework."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stream_infer.config import Settings
from stream_infer.lag.dashboard import Dashboard, DashboardView
from stream_infer.lag.exporter import LagMonitor, OffsetSource, lag_registry
from stream_infer.lag.page import render

log = logging.getLogger(__name__)


class LagServer:
    """The exporter: samples every ``monitor.interval_s``, serves /metrics and /status.

    Use :meth:`start` then :meth:`stop` (or as a context manager); ``port`` is the bound
    port (pass 0 for a free one).
    """

    def __init__(
        self,
        settings: Settings,
        source: OffsetSource,
        groups: Sequence[str],
        host: str,
        port: int,
        interval_s: float,
        scrape_urls: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self._dashboard = Dashboard(settings, scrape_urls)
        self._board: DashboardView | None = None
        self._board_lock = threading.Lock()
        self.monitor = LagMonitor(
            source, groups, settings.lag.window, interval_s, on_sample=self._refresh_board
        )
        self.registry = lag_registry(self.monitor, settings.lag.cluster_name)
        self._stop = threading.Event()
        self._sampler = threading.Thread(
            target=self.monitor.run, args=(self._stop,), name="lag-sampler", daemon=True
        )
        self._http = ThreadingHTTPServer((host, port), _handler(self))
        self._http.daemon_threads = True
        self._serving = threading.Thread(
            target=self._http.serve_forever, name="lag-http", daemon=True
        )

    @property
    def port(self) -> int:
        port: int = self._http.server_address[1]
        return port

    def _refresh_board(self) -> None:
        board = self._dashboard.refresh()
        with self._board_lock:
            self._board = board

    def metrics(self) -> bytes:
        """The Prometheus exposition of the lag registry."""
        registry: CollectorRegistry = self.registry
        return generate_latest(registry)

    def status_page(self) -> str:
        """The rendered /status page."""
        with self._board_lock:
            board = self._board
        return render(
            self.monitor.view,
            self.monitor.error,
            board,
            self.settings.lag.cluster_name,
            refresh_s=self.monitor.interval_s,
        )

    def start(self) -> LagServer:
        self._sampler.start()
        self._serving.start()
        log.info("lag exporter on http://%s:%d (/metrics, /status)", *self._http.server_address)
        return self

    def wait(self) -> None:
        """Block until :meth:`stop` is called (from a signal handler or another thread)."""
        self._stop.wait()

    def stop(self) -> None:
        """Stop sampling and serving (safe to call twice, from a signal handler too)."""
        self._stop.set()

    def close(self) -> None:
        """Stop, then release the port once the threads have ended."""
        self.stop()
        self._http.shutdown()
        self._http.server_close()
        self._sampler.join(self.settings.lag.timeout_s * 3)

    def __enter__(self) -> LagServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _handler(server: LagServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, server.metrics())
            elif path in ("/status", "/status/"):
                self._send(200, "text/html; charset=utf-8", server.status_page().encode())
            elif path == "/":
                self.send_response(302)
                self.send_header("Location", "/status")
                self.end_headers()
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: /metrics, /status\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return Handler
