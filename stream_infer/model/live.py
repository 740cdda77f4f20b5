"""The lifecycle as one process runs it: the watcher's serving set taken between batches, the
judge fed after each, and the metrics kept in step (worker and sidecar share this)."""

from __future__ import annotations

from typing import Any

from stream_infer.metrics import WorkerMetrics
from stream_infer.model.control import ControlListener
from stream_infer.model.drift import WindowResult
from stream_infer.model.judge import RolloutJudge
from stream_infer.model.routed import RoutedScores
from stream_infer.model.serving import Served, ServingModels, ServingWatcher


class LiveModels:
    """Hot swap between batches plus drift judgement; see :mod:`stream_infer.model.serving`."""

    def __init__(
        self,
        watcher: ServingWatcher,
        judge: RolloutJudge | None,
        metrics: WorkerMetrics,
        listener: ControlListener | None = None,
    ) -> None:
        self.watcher = watcher
        self.listener = listener
        self.judge = judge
        self.metrics = metrics
        self._applied: ServingModels | None = None

    def before_batch(self, pipeline: Any) -> None:
        """Give the pipeline the newest serving set (a batch never mixes sets)."""
        current = self.watcher.current
        if current is self._applied:
            return
        pipeline.serving = current
        self._applied = current
        if self.judge is not None:
            self.judge.use(current)
        self.metrics.set_serving(
            [(role, s.version, s.semver) for role, s in current.members()],
            current.percent,
            current.revision,
        )
        m = current.champion.model
        self.metrics.set_model(m.name, m.version, m.provider)

    def after_batch(self, routed: RoutedScores | None) -> None:
        if self.judge is not None:
            self.judge.observe(routed)

    def model_error(self, served: Served, events: int) -> None:
        if self.judge is not None:
            self.judge.model_error(served.version, events)

    def on_window(self, window: WindowResult, role: str) -> None:
        if window.psi is not None:
            self.metrics.psi.labels(str(window.version), role).set(window.psi)

    def on_rollback(self, version: int, reason: str) -> None:
        self.metrics.rollbacks.inc()
        self.watcher.refresh()  # this process switches at once; others within a poll

    def on_refused(self, version: int, reason: str) -> None:
        self.metrics.model_load_failures.labels(str(version)).inc()

    def stop(self) -> None:
        self.watcher.stop()
        if self.listener is not None:
            self.listener.stop()
