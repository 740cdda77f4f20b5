"""Scale-out on one host: ``stream-infer worker --processes N``.

N worker processes join the same consumer group (Kafka splits the partitions between them, one
partition to one process); each has its own ONNX Runtime session with intra-op threads sized to
the cores (cores // N), its own metrics port (``metrics.port + i``) and, with static membership,
its own instance id (``<instance_id>-<i>``). They shut down together: SIGTERM/SIGINT is forwarded
to every child, and if one exits with an error the others are stopped too, so a supervisor sees
one failure and restarts the set. Across hosts, run more replicas up to the partition count:
Kafka is the distributed engine (docs/ARCHITECTURE.md, "Layout").
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from stream_infer.config import Settings
from stream_infer.process import child_env

log = logging.getLogger(__name__)


def child_settings(settings: Settings, index: int, processes: int) -> Settings:
    """The settings of child ``index`` of ``processes``."""
    cores = os.cpu_count() or 1
    model = settings.model.model_copy(update={"intra_op_threads": max(1, cores // processes)})
    metrics = settings.metrics
    if metrics.enabled and metrics.port:
        metrics = metrics.model_copy(update={"port": metrics.port + index})
    worker = settings.worker
    if worker.instance_id:
        worker = worker.model_copy(update={"instance_id": f"{worker.instance_id}-{index}"})
    return settings.model_copy(update={"model": model, "metrics": metrics, "worker": worker})


def run_processes(settings: Settings, processes: int, extra_args: list[str] | None = None) -> int:
    """Run ``processes`` workers until they all exit; returns the first non-zero exit code."""
    children: list[subprocess.Popen[bytes]] = []
    for i in range(processes):
        env = child_env(child_settings(settings, i, processes))
        cmd = [sys.executable, "-m", "stream_infer", "worker", *(extra_args or [])]
        children.append(subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL))
    log.info("started %d worker processes: %s", processes, [c.pid for c in children])

    def forward(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping %d worker processes", signum, len(children))
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    while any(c.poll() is None for c in children):
        for child in children:
            code = child.poll()
            if code not in (None, 0) and status == 0:
                status = code
                log.error("worker process %d exited with %d: stopping the others", child.pid, code)
                forward(signal.SIGTERM, None)
        time.sleep(0.2)
    codes = [c.returncode for c in children]
    return status or next((c for c in codes if c), 0)
