"""The serving set: which loaded versions score, in which role, replaced whole between batches.

The registry is the source of truth (:mod:`stream_infer.model.roles`); a
:class:`ServingWatcher` in every worker and sidecar reads its cheap ``serving()`` view every
``model.poll_interval_s``, and when the revision changes loads what is new in the background
(sha256 and signature checked, session built and warmed up, a probe batch checked for finite
scores, in [0, 1] for a probability) before it swaps the set in. A version that fails any of
that is refused: the old set keeps serving, and the refusal is reported to the registry
(``model list`` shows it) and to the metrics. Loaded versions stay cached, so the previous
champion is still warm and a rollback is instant (docs/ARCHITECTURE.md, "Model lifecycle").
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from stream_infer.config import ModelSettings
from stream_infer.errors import StreamInferError
from stream_infer.model.drift import Reference
from stream_infer.model.interface import Registry
from stream_infer.model.roles import Role
from stream_infer.model.session import LoadedModel, load_model

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Served:
    """A loaded version and what judging it needs."""

    model: LoadedModel
    semver: str
    reference: Reference | None

    @property
    def version(self) -> int:
        return self.model.version


@dataclass(frozen=True, slots=True)
class ServingModels:
    """Champion, optional challenger at ``percent``, optional shadow: one registry revision."""

    revision: int
    champion: Served
    challenger: Served | None = None
    percent: int = 0
    shadow: Served | None = None

    @staticmethod
    def of(model: LoadedModel, semver: str = "") -> ServingModels:
        """A set of one champion (tests, fixed-version deployments)."""
        return ServingModels(0, Served(model, semver or f"{model.version}.0.0", None))

    def role_of(self, version: int) -> Role | None:
        if self.champion.version == version:
            return "champion"
        if self.challenger is not None and self.challenger.version == version:
            return "challenger"
        if self.shadow is not None and self.shadow.version == version:
            return "shadow"
        return None

    def members(self) -> list[tuple[Role, Served]]:
        out: list[tuple[Role, Served]] = [("champion", self.champion)]
        if self.challenger is not None:
            out.append(("challenger", self.challenger))
        if self.shadow is not None:
            out.append(("shadow", self.shadow))
        return out


class ProbeError(StreamInferError):
    """A freshly loaded version gave non-finite or out-of-range scores on the probe batch."""


def probe(model: LoadedModel, n_features: int) -> None:
    """Score a probe batch (zeros, and rows of plausible magnitudes); refuse odd outputs.

    Raises:
        ProbeError: a score is NaN or infinite, or a probability is outside [0, 1] (a
            decision score may be any finite number).
    """
    rng = np.random.default_rng(0)
    rows = np.vstack(
        [np.zeros((1, n_features)), rng.uniform(0, 200, size=(63, n_features))]
    ).astype(np.float32)
    scores = np.asarray(model.predict(rows), dtype=np.float64)
    if scores.shape != (len(rows),) or not np.all(np.isfinite(scores)):
        raise ProbeError(f"version {model.version}: probe batch gave non-finite scores")
    if model.score_kind == "probability" and (scores.min() < 0.0 or scores.max() > 1.0):
        raise ProbeError(f"version {model.version}: probe scores outside [0, 1]")


class ModelCache:
    """Loaded versions of one model, kept warm; loads verify, warm up and probe."""

    def __init__(
        self, registry: Registry, settings: ModelSettings, feature_names: Sequence[str]
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.feature_names = tuple(feature_names)
        self._loaded: dict[int, Served] = {}

    def get(self, version: int) -> Served:
        """The loaded version, loading it first if needed.

        Raises:
            ModelNotFoundError, ModelArtifactError, ProbeError: refused (nothing cached).
        """
        served = self._loaded.get(version)
        if served is not None:
            return served
        s = self.settings
        model = load_model(
            self.registry,
            s.name,
            self.feature_names,
            version=version,
            device=s.device,
            intra_op_threads=s.intra_op_threads,
            warmup_batches=s.warmup_batches,
        )
        probe(model, len(self.feature_names))
        manifest = self.registry.manifest(s.name, version)
        reference = (
            Reference.from_cuts(manifest.reference_deciles, manifest.reference_histogram)
            if manifest.reference_deciles
            else None
        )
        served = Served(model, manifest.semver or f"{version}.0.0", reference)
        self._loaded[version] = served
        return served

    def keep(self, versions: set[int]) -> None:
        """Unload versions no role and no rollback target needs."""
        for version in [v for v in self._loaded if v not in versions]:
            del self._loaded[version]


class ServingWatcher:
    """Follows the registry's roles and publishes the :class:`ServingModels` to use.

    :attr:`current` is replaced whole (an attribute swap is atomic); readers take it once per
    batch, so a batch never mixes versions except by the canary's routing.
    """

    def __init__(
        self,
        cache: ModelCache,
        *,
        reporter: str | None = None,
        on_change: Callable[[ServingModels], None] | None = None,
        on_refused: Callable[[int, str], None] | None = None,
    ) -> None:
        self.cache = cache
        self.reporter = reporter or f"{socket.gethostname()}"
        self.on_change = on_change
        self.on_refused = on_refused
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused: dict[int, str] = {}
        # The poll thread and the model-control listener may refresh at once: one at a time,
        # so an older set never replaces a newer one.
        self._lock = threading.Lock()
        self.current = self._build(strict=True)

    @property
    def name(self) -> str:
        return self.cache.settings.name

    def refresh(self) -> bool:
        """Read the registry once; swap in a new set if its revision changed. True if swapped.

        Never raises for a bad version: the refusal is reported and the old set stays.
        """
        with self._lock:
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            spec = self.cache.registry.serving(self.name)
        except StreamInferError as exc:
            log.warning("registry read failed (keeping the serving set): %s", exc)
            return False
        if spec.revision == self.current.revision:
            return False
        new = self._build(strict=False)
        if new is None or new.revision == self.current.revision:
            return False
        old, self.current = self.current, new
        log.info(
            "serving %s: champion v%d%s%s (revision %d, was %d)",
            self.name,
            new.champion.version,
            f", challenger v{new.challenger.version} at {new.percent}%" if new.challenger else "",
            f", shadow v{new.shadow.version}" if new.shadow else "",
            new.revision,
            old.revision,
        )
        if self.on_change is not None:
            self.on_change(new)
        return True

    def start(self, interval_s: float) -> None:
        """Poll in a daemon thread every ``interval_s`` until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="serving-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _build(self, *, strict: bool) -> ServingModels:
        registry, name = self.cache.registry, self.name
        spec = registry.serving(name)
        wanted: list[tuple[Role, int]] = [("champion", spec.champion)]
        if spec.challenger is not None:
            wanted.append(("challenger", spec.challenger.version))
        if spec.shadow is not None:
            wanted.append(("shadow", spec.shadow))
        loaded: dict[Role, Served | None] = {}
        for role, version in wanted:
            try:
                loaded[role] = self.cache.get(version)
            except StreamInferError as exc:
                if strict and role == "champion":
                    raise
                self._refuse(version, f"{type(exc).__name__}: {exc}")
                if role == "champion":
                    return self.current  # the old champion keeps serving
                loaded[role] = None
            else:
                self._ready(version)
        champion = loaded["champion"]
        assert champion is not None
        challenger = loaded.get("challenger")
        keep = {v for _r, v in wanted}
        if not strict:
            keep.add(self.current.champion.version)  # warm for an instant rollback
        self.cache.keep(keep)
        return ServingModels(
            revision=spec.revision,
            champion=champion,
            challenger=challenger,
            percent=spec.challenger.percent if spec.challenger and challenger else 0,
            shadow=loaded.get("shadow"),
        )

    def _refuse(self, version: int, reason: str) -> None:
        if self._refused.get(version) == reason:
            return
        self._refused[version] = reason
        log.error("refused %s v%d (the serving set is unchanged): %s", self.name, version, reason)
        if self.on_refused is not None:
            self.on_refused(version, reason)
        try:
            self.cache.registry.record_status(
                self.name, version, "failed", reason, reporter=self.reporter
            )
        except StreamInferError as exc:
            log.warning("could not report the refusal to the registry: %s", exc)

    def _ready(self, version: int) -> None:
        self._refused.pop(version, None)
        try:
            statuses = self.cache.registry.statuses(self.name, version)
            if statuses.get(self.reporter) is None or statuses[self.reporter].state != "ready":
                self.cache.registry.record_status(
                    self.name, version, "ready", reporter=self.reporter
                )
        except StreamInferError as exc:
            log.warning("could not report the load to the registry: %s", exc)
