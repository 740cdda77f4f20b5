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
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import BaseModel, SecretStr

from stream_infer.config import Settings


def _env_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):  # kafka.extra_secret: the child needs the values
        value = {
            k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in value.items()
        }
    if isinstance(value, (list, tuple, dict)):
        return orjson.dumps(value).decode()  # pydantic-settings parses complex values as JSON
    return str(value)


def child_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with every field of ``settings`` as
    ``STREAM_INFER_<SECTION>__<FIELD>`` (secrets included: the child needs them)."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith("STREAM_INFER_") and k != "KAFKA_BOOTSTRAP"
    }
    for section_name in type(settings).model_fields:
        section = getattr(settings, section_name)
        if not isinstance(section, BaseModel):
            continue  # kafka_bootstrap: already resolved into kafka.bootstrap_servers
        for name in type(section).model_fields:
            value = _env_value(getattr(section, name))
            if value is not None:
                env[f"STREAM_INFER_{section_name.upper()}__{name.upper()}"] = value
    if settings.kafka.bootstrap_servers is None and settings.kafka_bootstrap is not None:
        env["STREAM_INFER_KAFKA__BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap
    return env


class ChildProcess:
    """A ``stream-infer <command>`` child; stdout and stderr go to ``log``."""

    def __init__(
        self, settings: Settings, log: Path, command: str = "worker", args: Sequence[str] = ()
    ) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream_infer", *command.split(), *args],
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
