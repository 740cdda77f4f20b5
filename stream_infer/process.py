"""Run ``stream-infer <command>`` as a child process configured through its environment.

The settings tree is the only thing that reads the environment; a child gets the parent's
settings by having them written back into ``STREAM_INFER_*`` variables here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from stream_infer.config import Settings


def child_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``settings`` as STREAM_INFER_*."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith("STREAM_INFER_") and k != "KAFKA_BOOTSTRAP"
    }
    t, f = settings.topics, settings.features
    values = {
        "KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers or "",
        "KAFKA__SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
        "TOPICS__TRANSACTIONS": t.transactions,
        "TOPICS__LABELS": t.labels,
        "TOPICS__SCORES": t.scores,
        "TOPICS__SCORES_SHADOW": t.scores_shadow,
        "TOPICS__DEAD_LETTER": t.dead_letter,
        "TOPICS__SPECS_DIR": str(t.specs_dir),
        "WORKER__GROUP_ID": settings.worker.group_id,
        "WORKER__EMIT_FEATURES": str(settings.worker.emit_features).lower(),
        "BATCH__MAX_BATCH_SIZE": str(settings.batch.max_batch_size),
        "BATCH__MAX_WAIT_MS": str(settings.batch.max_wait_ms),
        "MODEL__REGISTRY_DIR": str(settings.model.registry_dir),
        "MODEL__NAME": settings.model.name,
        "MODEL__DEVICE": settings.model.device,
        "METRICS__ENABLED": str(settings.metrics.enabled).lower(),
        "METRICS__PORT": str(settings.metrics.port),
        "FEATURES__STATE_DIR": str(f.state_dir),
        "FEATURES__REPO_DIR": str(f.repo_dir),
        "FEATURES__FEAST_ONLINE": str(f.feast_online).lower(),
        "FEATURES__TERMINAL_WAIT_MS": str(f.terminal_wait_ms),
    }
    if settings.redis.url is not None:
        values["REDIS__URL"] = settings.redis.url.get_secret_value()
        values["REDIS__KEY_PREFIX"] = settings.redis.key_prefix
    env.update({f"STREAM_INFER_{k}": v for k, v in values.items()})
    return env


class ChildProcess:
    """A ``stream-infer <command>`` child; stdout and stderr go to ``log``."""

    def __init__(self, settings: Settings, log: Path, command: str = "worker") -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream_infer", command],
            env=child_env(settings),
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout_s: float = 60.0) -> None:
        """Block until ``needle`` appears in the output.

        Raises:
            RuntimeError: the child exited or the timeout passed first.
        """
        deadline = time.monotonic() + timeout_s
        while needle not in self.output():
            if self.proc.poll() is not None:
                raise RuntimeError(f"child exited: {self.output()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{needle!r} not seen: {self.output()[-2000:]}")
            time.sleep(0.05)

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (graceful drain), wait, return the exit code (SIGKILL after the timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._fh.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._fh.close()

    def stats(self) -> dict[str, int]:
        """The worker's closing ``consumed=… scored=… dead_lettered=…`` line."""
        line = [ln for ln in self.output().splitlines() if ln.startswith("consumed=")][-1]
        return {k: int(v) for k, v in (part.split("=") for part in line.split())}
