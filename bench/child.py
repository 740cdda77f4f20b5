"""A ``python -m bench.rows`` child with its memory watched from outside (:mod:`bench.memory`).

The child reports its own ``VmHWM`` (``hwm_mb``); this side adds the peak of its sampled RSS
(``sampled_rss_mb``) and ``processes`` (1), so every row carries the same memory figures as the
``stream-infer worker`` rows, which are watched only from outside.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

import orjson

from bench.memory import TreeSampler
from stream_infer.config import Settings


def row_args(settings: Settings, events: int, **extra: Any) -> dict[str, Any]:
    """What ``bench.rows`` reads: the topics, registry and state of ``settings``."""
    return {
        "bootstrap": settings.kafka.bootstrap_servers,
        "source": settings.topics.transactions,
        "sink": settings.topics.scores,
        "shadow_sink": settings.topics.scores_shadow,
        "dead_letter": settings.topics.dead_letter,
        "events": events,
        "registry": str(settings.model.registry_dir),
        "state_dir": str(settings.features.state_dir),
        "specs": str(settings.topics.specs_dir),
        **extra,
    }


class RowProcess:
    """``python -m bench.rows <name> <args>``, stdout and stderr to files under ``logs``."""

    def __init__(self, name: str, args: dict[str, Any], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        stem = logs / f"row-{name}-{uuid.uuid4().hex[:6]}"
        self.name = name
        self._out, self._err = stem.with_suffix(".out"), stem.with_suffix(".err")
        self._files: list[IO[bytes]] = [self._out.open("wb"), self._err.open("wb")]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.rows", name, orjson.dumps(args).decode()],
            stdout=self._files[0],
            stderr=self._files[1],
            stdin=subprocess.DEVNULL,
        )
        self.sampler = TreeSampler(self.proc.pid)

    def _failure(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"row {self.name} {what}: {self._err.read_text(errors='replace')[-2000:]}"
        )

    def wait_for(self, needle: str, timeout_s: float = 120.0) -> None:
        """Block until ``needle`` appears on the child's stdout.

        Raises:
            RuntimeError: the child exited or the timeout passed first.
        """
        deadline = time.monotonic() + timeout_s
        while needle not in self._out.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise self._failure("exited")
            if time.monotonic() > deadline:
                raise self._failure(f"never printed {needle!r}")
            time.sleep(0.05)

    def result(self, timeout_s: float = 900.0) -> dict[str, Any]:
        """Wait for the child; its JSON line plus the sampled memory figures.

        Raises:
            RuntimeError: it failed, printed no result, or outlived ``timeout_s`` (then killed).
        """
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise self._failure(f"still running after {timeout_s:.0f} s") from None
        finally:
            peak = self.sampler.stop()
            for f in self._files:
                f.close()
        lines = [ln for ln in self._out.read_text().splitlines() if ln.startswith("{")]
        if code != 0 or not lines:
            raise self._failure(f"failed ({code})")
        result: dict[str, Any] = orjson.loads(lines[-1])
        return {**result, "sampled_rss_mb": round(peak, 1), "processes": 1}

    def kill(self) -> None:
        """Kill the child (if still running) and stop watching it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.sampler.stop()
        for f in self._files:
            f.close()


def run_row(name: str, settings: Settings, events: int, logs: Path, **extra: Any) -> dict[str, Any]:
    """Run one row to completion in its own process (see :meth:`RowProcess.result`)."""
    return RowProcess(name, row_args(settings, events, **extra), logs).result()
