"""The status page's other panels: model roles and recent role changes (the registry), the
label watermark (the terminal-row store) and the workers' figures (their ``/metrics``).

Each panel is read independently and carries its own error: a registry that cannot be read
or a worker that does not answer is shown as such, never hides the lag tables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from stream_infer.config import Settings
from stream_infer.errors import StreamInferError
from stream_infer.lag.scrape import Scrape, WorkerFigures, fetch, figures
from stream_infer.model.roles import RoleEvent, RoleState

log = logging.getLogger(__name__)

#: Role changes listed on the page, newest first.
HISTORY_SHOWN = 8


@dataclass(frozen=True)
class ModelPanel:
    """A model's current roles and its last role changes (newest first)."""

    name: str
    roles: RoleState | None = None
    history: tuple[RoleEvent, ...] = ()
    error: str | None = None

    @property
    def rollbacks(self) -> tuple[RoleEvent, ...]:
        return tuple(e for e in self.history if e.action == "rollback")


@dataclass(frozen=True)
class DashboardView:
    """Everything but the lag tables, as of ``at`` (wall clock)."""

    at: float
    model: ModelPanel
    workers: tuple[WorkerFigures, ...] = ()
    label_watermark: date | None = None
    label_watermark_error: str | None = None


def day_date(day: int) -> date:
    """The calendar date of a UTC day number (days since 1970-01-01)."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).date()


@dataclass
class Dashboard:
    """Reads the panels; keeps each worker's previous scrape for rates (not thread-safe:
    one sampler calls :meth:`refresh`)."""

    settings: Settings
    scrape_urls: Sequence[str] = ()
    timeout_s: float = 2.0
    _previous: dict[str, Scrape] = field(default_factory=dict, init=False)
    _terminals: Any = field(default=None, init=False)

    def refresh(self) -> DashboardView:
        """Read every panel now."""
        workers = []
        for url in self.scrape_urls:
            now = fetch(url, time.monotonic(), self.timeout_s)
            workers.append(figures(now, self._previous.get(url)))
            if now.error is None:
                self._previous[url] = now
        watermark, watermark_error = self._label_watermark()
        return DashboardView(
            at=time.time(),
            model=self._model(),
            workers=tuple(workers),
            label_watermark=watermark,
            label_watermark_error=watermark_error,
        )

    def _model(self) -> ModelPanel:
        from stream_infer.model.registry import open_registry

        name = self.settings.model.name
        try:
            registry = open_registry(self.settings.model)
            history = registry.history(name)
            return ModelPanel(name, registry.roles(name), tuple(reversed(history[-HISTORY_SHOWN:])))
        except StreamInferError as exc:
            return ModelPanel(name, error=str(exc))

    def _label_watermark(self) -> tuple[date | None, str | None]:
        from stream_infer.state.factory import open_state

        if not self.settings.redis.enabled and not self.settings.features.state_dir.exists():
            # Opening the SQLite state would create it: there is none to read on this host.
            return None, f"no feature state at {self.settings.features.state_dir}"
        try:
            if self._terminals is None:
                self._terminals = open_state(self.settings, "read").terminals
            day = self._terminals.complete_through()
        except StreamInferError as exc:
            return None, str(exc)
        return (None if day is None else day_date(int(day))), None
