"""Child processes for tests: the real `stream-infer` commands (see stream_infer.process)."""

from __future__ import annotations

from stream_infer.process import ChildProcess as WorkerProcess
from stream_infer.process import child_env as settings_env

__all__ = ["WorkerProcess", "settings_env"]
