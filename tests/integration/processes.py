"""Run `stream-infer worker` as a real child process configured through its environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from stream_infer.config import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The STREAM_INFER_* variables that rebuild ``settings`` in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_INFER_")}
    env.pop("KAFKA_BOOTSTRAP", None)
    t = settings.topics
    values = {
        "KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers or "",
        "TOPICS__TRANSACTIONS": t.transactions,
        "TOPICS__LABELS": t.labels,
        "TOPICS__SCORES": t.scores,
        "TOPICS__SCORES_SHADOW": t.scores_shadow,
        "TOPICS__DEAD_LETTER": t.dead_letter,
        "WORKER__GROUP_ID": settings.worker.group_id,
        "WORKER__EMIT_FEATURES": str(settings.worker.emit_features).lower(),
        "BATCH__MAX_BATCH_SIZE": str(settings.batch.max_batch_size),
        "BATCH__MAX_WAIT_MS": str(settings.batch.max_wait_ms),
        "MODEL__REGISTRY_DIR": str(settings.model.registry_dir),
        "METRICS__ENABLED": str(settings.metrics.enabled).lower(),
        "METRICS__PORT": str(settings.metrics.port),
        "FEATURES__STATE_DIR": str(settings.features.state_dir),
        "FEATURES__REPO_DIR": str(settings.features.repo_dir),
        "FEATURES__FEAST_ONLINE": str(settings.features.feast_online).lower(),
        "FEATURES__TERMINAL_WAIT_MS": str(settings.features.terminal_wait_ms),
        "KAFKA__SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
    }
    if settings.redis.url is not None:
        values["REDIS__URL"] = settings.redis.url.get_secret_value()
        values["REDIS__KEY_PREFIX"] = settings.redis.key_prefix
    env.update({f"STREAM_INFER_{k}": v for k, v in values.items()})
    return env


class WorkerProcess:
    """A ``stream-infer <command>`` child (the worker by default); output goes to ``log``."""

    def __init__(self, settings: Settings, log: Path, command: str = "worker") -> None:
        self.log = log
        self._fh: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream_infer", command],
            env=settings_env(settings),
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited: {self.output()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not seen: {self.output()[-2000:]}")
            time.sleep(0.05)

    def terminate(self, timeout_s: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout_s)
        self._fh.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._fh.close()

    def stats(self) -> dict[str, int]:
        line = [ln for ln in self.output().splitlines() if ln.startswith("consumed=")][-1]
        return {k: int(v) for k, v in (part.split("=") for part in line.split())}
