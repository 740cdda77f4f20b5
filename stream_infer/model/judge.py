"""Live judgement of the serving set: PSI and error rate per version, and the automatic
rollback of a challenger that breaches the rollout policy (docs/ARCHITECTURE.md, "Model
lifecycle"). The decision is written to the registry (history says why), which tells every
worker and sidecar through their watchers.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from stream_infer.config import RolloutSettings
from stream_infer.errors import StreamInferError
from stream_infer.model.drift import DriftMonitor, WindowResult
from stream_infer.model.interface import Registry
from stream_infer.model.rollout import RolloutPolicy
from stream_infer.model.routed import RoutedScores
from stream_infer.model.serving import ServingModels

log = logging.getLogger(__name__)


class RolloutJudge:
    """Feeds each batch's scores to the drift monitor and acts on the challenger's windows."""

    def __init__(
        self,
        settings: RolloutSettings,
        registry: Registry,
        serving: ServingModels,
        *,
        on_window: Callable[[WindowResult, str], None] | None = None,
        on_rollback: Callable[[int, str], None] | None = None,
        actor: str | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.monitor = DriftMonitor(settings)
        self.policy = RolloutPolicy(settings)
        self.actor = actor or f"rollout-policy@{socket.gethostname()}"
        self.on_window = on_window
        self.on_rollback = on_rollback
        self._serving = serving
        self._rolled_back: set[tuple[int, int]] = set()
        self.use(serving)

    def use(self, serving: ServingModels) -> None:
        """A new serving set: references for its versions; a new challenger starts afresh."""
        old = self._serving.challenger
        self._serving = serving
        for _role, served in serving.members():
            if served.reference is not None:
                self.monitor.set_reference(served.version, served.reference)
        if serving.challenger is None or old is None or old.version != serving.challenger.version:
            self.policy.reset()

    def observe(self, routed: RoutedScores | None) -> None:
        """One batch's scores (call once per batch, after scoring)."""
        windows: list[WindowResult] = []
        if routed is not None:
            for served, scores in routed.served_by():
                if len(scores):
                    windows += self.monitor.observe(served.version, scores)
            if routed.shadow is not None and routed.serving.shadow is not None:
                windows += self.monitor.observe(routed.serving.shadow.version, routed.shadow)
        windows += self.monitor.poll()
        for window in windows:
            self._judge(window)

    def model_error(self, version: int, events: int) -> None:
        for window in self.monitor.observe_error(version, events):
            self._judge(window)

    def _judge(self, window: WindowResult) -> None:
        serving = self._serving
        role = (
            serving.role_of(window.version) if isinstance(window.version, int) else None
        ) or "retired"
        if self.on_window is not None:
            self.on_window(window, role)
        challenger = serving.challenger
        if not self.settings.enabled or challenger is None or window.version != challenger.version:
            return
        if serving.percent == 0:
            return
        decision = self.policy.judge(window)
        key = (serving.revision, challenger.version)
        if not decision.rollback or key in self._rolled_back:
            return
        self._rolled_back.add(key)
        reason = f"automatic rollback: {decision.reason}"
        log.warning("%s v%d: %s", serving.champion.model.name, challenger.version, reason)
        try:
            self.registry.canary(
                serving.champion.model.name, challenger.version, 0, actor=self.actor, reason=reason
            )
        except StreamInferError as exc:
            log.error("could not record the rollback in the registry: %s", exc)
            return
        if self.on_rollback is not None:
            self.on_rollback(challenger.version, reason)
