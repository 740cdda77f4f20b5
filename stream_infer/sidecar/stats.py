"""Inference statistics per model version, in Triton's statistics-extension shape.

What is counted: Open Inference Protocol inference requests (HTTP ``/v2/.../infer`` and gRPC
``ModelInfer``), for a model and version this sidecar serves. ``/v1`` predictions have their
Prometheus metrics instead (:mod:`stream_infer.sidecar.metrics`), and explanations' internal
model calls are not requests. As in Triton:

- ``success`` / ``fail``: requests answered / refused after the model was resolved (bad
  input, a full queue, a timeout), with the time from receipt to answer;
- ``queue``: per request, from submission to the start of its batch;
- ``compute_input`` / ``compute_infer`` / ``compute_output``: per request, the batch's input
  assembly, model call and output split (each request of a batch is charged the batch's time);
- ``inference_count``: rows inferred; ``execution_count``: model calls; ``batch_stats``: the
  compute times by the number of rows per call; ``last_inference``: ms since the epoch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PHASES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
COMPUTE = ("compute_input", "compute_infer", "compute_output")


@dataclass(slots=True)
class _Version:
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    phases: dict[str, list[int]] = field(default_factory=lambda: {p: [0, 0] for p in PHASES})
    batches: dict[int, dict[str, list[int]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Execution:
    """One model call: its rows, each request's queue time, and the call's phases (ns)."""

    rows: int
    queue_ns: tuple[int, ...]
    input_ns: int
    infer_ns: int
    output_ns: int


class InferenceStatistics:
    """Thread-safe counters (the batcher, the HTTP routes and the gRPC servicer share them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, int], _Version] = {}

    def _of(self, name: str, version: int) -> _Version:
        return self._versions.setdefault((name, version), _Version())

    def executed(self, name: str, version: int, run: Execution) -> None:
        requests = len(run.queue_ns)
        with self._lock:
            v = self._of(name, version)
            v.last_inference_ms = time.time_ns() // 1_000_000
            v.inference_count += run.rows
            v.execution_count += 1
            for queued in run.queue_ns:
                _add(v.phases["queue"], 1, queued)
            per_call = dict(zip(COMPUTE, (run.input_ns, run.infer_ns, run.output_ns), strict=True))
            batch = v.batches.setdefault(run.rows, {p: [0, 0] for p in COMPUTE})
            for phase, ns in per_call.items():
                _add(v.phases[phase], requests, ns * requests)
                _add(batch[phase], 1, ns)

    def answered(self, name: str, version: int, ok: bool, ns: int) -> None:
        """A request was answered (``ok``) or refused, ``ns`` after it arrived."""
        with self._lock:
            _add(self._of(name, version).phases["success" if ok else "fail"], 1, ns)

    def report(self, name: str, versions: Iterable[int]) -> list[dict[str, Any]]:
        """Triton's ``model_stats`` entries for ``versions`` of ``name`` (zeros if unused)."""
        with self._lock:
            return [self._entry(name, version) for version in versions]

    def _entry(self, name: str, version: int) -> dict[str, Any]:
        v = self._versions.get((name, version), _Version())
        stats = {p: _duration(v.phases[p]) for p in PHASES}
        stats |= {"cache_hit": _duration([0, 0]), "cache_miss": _duration([0, 0])}
        return {
            "name": name,
            "version": str(version),
            "last_inference": v.last_inference_ms,
            "inference_count": v.inference_count,
            "execution_count": v.execution_count,
            "inference_stats": stats,
            "batch_stats": [
                {"batch_size": size, **{p: _duration(b[p]) for p in COMPUTE}}
                for size, b in sorted(v.batches.items())
            ],
            "memory_usage": [],
        }


def _add(slot: list[int], count: int, ns: int) -> None:
    slot[0] += count
    slot[1] += ns


def _duration(slot: list[int]) -> dict[str, int]:
    return {"count": slot[0], "ns": slot[1]}
