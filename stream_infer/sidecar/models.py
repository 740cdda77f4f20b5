"""The sidecar's serving set: followed from the registry exactly as the worker follows it, or
pinned to ``model.version``.

A :class:`~stream_infer.model.serving.ServingWatcher` re-reads the registry on each
announcement on the ``model-control`` topic (:mod:`stream_infer.model.control`) and at least
every ``model.poll_interval_s``, and swaps in a new set after load, verify, warm-up and probe; a
refused version is reported (registry, metrics) and the old set keeps serving. Each batch of
the sidecar's batchers takes :attr:`SidecarModels.current` once, so a batch never mixes sets,
and a customer is routed by the same sticky hash as in the stream
(:mod:`stream_infer.model.routing`), so the sidecar and the stream answer a customer from the
same version (docs/ARCHITECTURE.md, "Model lifecycle").

Refreshes from the poll loop and changes made through the repository API
(:mod:`stream_infer.sidecar.repository`) hold :attr:`SidecarModels.lock`, so one runs at a time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field

from stream_infer.config import Settings
from stream_infer.errors import StreamInferError
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.control import ControlListener
from stream_infer.model.interface import Registry
from stream_infer.model.registry import open_registry
from stream_infer.model.roles import Role
from stream_infer.model.routed import RoutedScores
from stream_infer.model.routing import routes_to_challenger
from stream_infer.model.serving import ModelCache, Served, ServingModels, ServingWatcher
from stream_infer.model.session import LoadedModel, load_model
from stream_infer.sidecar.metrics import SidecarMetrics

log = logging.getLogger(__name__)


def sidecar_id() -> str:
    """Who this process is in registry load reports and history (host and pid)."""
    return f"sidecar@{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Route:
    """Which version served a transaction, and in which role; ``model`` is that version (its
    manifest's rule judges the score)."""

    version: int
    semver: str
    role: Role
    model: LoadedModel = field(compare=False, repr=False)


def route_of(serving: ServingModels, customer_id: str) -> tuple[Served, Role]:
    """The member of ``serving`` that scores ``customer_id`` (the stream's routing)."""
    challenger = serving.challenger
    if (
        challenger is not None
        and serving.percent > 0
        and routes_to_challenger(customer_id, serving.percent)
    ):
        return challenger, "challenger"
    return serving.champion, "champion"


def routes_of(routed: RoutedScores) -> list[Route]:
    """Row-aligned: the version, semver and role that served each row of a routed batch."""
    s = routed.serving
    champion = Route(s.champion.version, s.champion.semver, "champion", s.champion.model)
    if routed.challenger is None or s.challenger is None:
        return [champion] * len(routed.scores)
    challenger = Route(s.challenger.version, s.challenger.semver, "challenger", s.challenger.model)
    return [challenger if on else champion for on in routed.challenger.tolist()]


class SidecarModels:
    """The current serving set and how it is kept current: followed from the registry
    through ``cache`` (the champion is loaded here), or ``pinned`` (never changes)."""

    def __init__(
        self,
        name: str,
        registry: Registry,
        metrics: SidecarMetrics,
        *,
        cache: ModelCache | None = None,
        pinned: ServingModels | None = None,
        reporter: str | None = None,
    ) -> None:
        """Raises ModelNotFoundError, ModelArtifactError, ProbeError: following, and the
        registry's champion cannot be loaded."""
        if (cache is None) == (pinned is None):
            raise ValueError("a serving set is either followed (cache) or pinned")
        self.name = name
        self.registry = registry
        self.metrics = metrics
        self.reporter = reporter or sidecar_id()
        #: Held by every refresh and every repository change (one at a time).
        self.lock = threading.Lock()
        #: The last reason each version was refused for (cleared once it serves).
        self.refusals: dict[int, str] = {}
        self._pinned = pinned
        self._applied: ServingModels | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listener: ControlListener | None = None
        self.watcher = (
            None
            if cache is None
            else ServingWatcher(cache, reporter=self.reporter, on_refused=self._on_refused)
        )
        self._publish()

    @property
    def current(self) -> ServingModels:
        """The serving set to take for the next batch (replaced whole, never mutated)."""
        if self.watcher is not None:
            return self.watcher.current
        assert self._pinned is not None
        return self._pinned

    @property
    def follows_registry(self) -> bool:
        return self.watcher is not None

    def refresh(self) -> bool:
        """Read the registry once and swap in a changed set (True if swapped). Never raises
        for a bad version (see :meth:`ServingWatcher.refresh`)."""
        with self.lock:
            return self.refresh_locked()

    def refresh_locked(self) -> bool:
        """:meth:`refresh` for a caller that already holds :attr:`lock`."""
        if self.watcher is None:
            return False
        changed = self.watcher.refresh()
        self._publish()
        return changed

    def start(self, interval_s: float) -> None:
        """Poll the registry every ``interval_s`` in a daemon thread until :meth:`stop`."""
        if self.watcher is None or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception:  # never let the poll loop die: the old set keeps serving
                    log.exception("serving-set refresh failed (keeping the serving set)")

        self._thread = threading.Thread(target=loop, name="sidecar-serving-watcher", daemon=True)
        self._thread.start()

    def listen(self, settings: Settings) -> bool:
        """Re-read the registry on each ``model-control`` announcement of this model (False
        when no Kafka cluster is configured: the poll alone keeps the set current)."""
        if self.watcher is None or self.listener is not None:
            return False

        def announced(name: str, revision: int) -> None:
            if name == self.name and revision != self.current.revision:
                self.refresh()

        self.listener = ControlListener(settings, announced)
        return self.listener.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.listener is not None:
            self.listener.stop()

    def report_refusal(self, version: int, reason: str) -> None:
        """A version this sidecar refused outside the watcher (a repository load): recorded
        like the watcher's refusals (registry status, metrics)."""
        self._on_refused(version, reason)
        try:
            self.registry.record_status(
                self.name, version, "failed", reason, reporter=self.reporter
            )
        except StreamInferError as exc:
            log.warning("could not report the refusal to the registry: %s", exc)

    def _on_refused(self, version: int, reason: str) -> None:
        self.refusals[version] = reason
        self.metrics.model_load_failures.labels(str(version)).inc()

    def _publish(self) -> None:
        """Keep the metrics (and the refusals) in step with the current set."""
        current = self.current
        if current is self._applied:
            return
        self._applied = current
        members = current.members()
        for _role, served in members:
            self.refusals.pop(served.version, None)
        self.metrics.set_serving(
            [(role, s.version, s.semver) for role, s in members], current.percent, current.revision
        )
        m = current.champion.model
        self.metrics.model_info.info(
            {"name": m.name, "version": str(m.version), "provider": m.provider}
        )


def build_models(settings: Settings, metrics: SidecarMetrics) -> SidecarModels:
    """The sidecar's serving set, loaded (verified, warmed up, probed) and, unless pinned,
    following the registry.

    A champion that cannot be loaded is reported to the registry as ``failed`` before this
    raises, so ``model list`` and the repository index say why the sidecar is not ready.

    Raises:
        ModelNotFoundError, ModelArtifactError, ProbeError: the champion (or the pinned
            version) cannot be loaded.
    """
    m = settings.model
    registry = open_registry(m)
    reporter = sidecar_id()
    if m.version is not None:
        model = load_model(
            registry,
            m.name,
            FEATURE_NAMES,
            version=m.version,
            device=m.device,
            intra_op_threads=m.intra_op_threads,
            warmup_batches=m.warmup_batches,
        )
        semver = registry.manifest(m.name, m.version).semver or f"{m.version}.0.0"
        pinned = ServingModels(0, Served(model, semver, None))
        return SidecarModels(m.name, registry, metrics, pinned=pinned, reporter=reporter)
    cache = ModelCache(registry, m, FEATURE_NAMES)
    try:
        models = SidecarModels(m.name, registry, metrics, cache=cache, reporter=reporter)
    except StreamInferError as exc:
        _report_champion_failure(registry, m.name, reporter, exc)
        raise
    models.start(m.poll_interval_s)
    models.listen(settings)
    return models


def _report_champion_failure(
    registry: Registry, name: str, reporter: str, exc: StreamInferError
) -> None:
    reason = f"{type(exc).__name__}: {exc}"
    try:
        champion = registry.serving(name).champion
        known = registry.statuses(name, champion).get(reporter)
        if known is None or known.state != "failed" or known.reason != reason:
            registry.record_status(name, champion, "failed", reason, reporter=reporter)
    except StreamInferError as report_exc:  # no champion, or the registry is unreadable
        log.debug("could not report the champion's failure: %s", report_exc)
