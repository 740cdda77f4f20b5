"""Peak memory and CPU of the processes one benchmark row runs in, each row its own.

Why not ``getrusage``: Linux carries ``ru_maxrss`` across ``exec``, so a child forked (or
vforked) from a 600 MB harness reports the harness's peak however little it uses itself, and
``RUSAGE_CHILDREN`` is the maximum over every child so far. What belongs to one process is its
``VmHWM`` (``/proc/<pid>/status``: the high-water mark of its own address space, started anew
by ``exec``) and its sampled RSS.

:class:`TreeSampler` follows a process and every descendant (a ``--processes N`` supervisor and
its workers; threads share their process's RSS): the peak of the summed RSS, sampled every
``interval_s``, and on demand the summed ``VmHWM`` and CPU seconds of the live tree. RSS counts
pages shared between processes (libraries, copy-on-write) once per process.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psutil  # type: ignore[import-untyped,unused-ignore]  # stubs: types-psutil

_MB = 1024 * 1024


def vm_hwm_mb(pid: int | str = "self") -> float:
    """``VmHWM`` of ``pid`` in MB (0.0 when the kernel does not report it, e.g. a zombie).

    Raises:
        OSError: the process does not exist (any more).
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return 0.0


def process_tree(root: psutil.Process) -> list[psutil.Process]:
    """``root`` and its descendants now (empty when ``root`` exited)."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_cpu_s(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs`` so far; processes that exited count 0."""
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


class TreeSampler:
    """Samples the RSS of ``pid`` and its descendants in a background thread until
    :meth:`stop`; processes that exit between samples are skipped, never an error."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self._root = psutil.Process(pid)
        self._interval_s = interval_s
        self._done = threading.Event()
        self.peak_mb = 0.0
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _tree(self) -> list[psutil.Process]:
        return process_tree(self._root)

    def _run(self) -> None:
        while not self._done.is_set():
            total = 0
            for proc in self._tree():
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_mb = max(self.peak_mb, total / _MB)
            self._done.wait(self._interval_s)

    def hwm_mb(self) -> list[float]:
        """Each live process's own ``VmHWM`` (root first): call it before the tree exits."""
        out: list[float] = []
        for proc in self._tree():
            try:
                out.append(round(vm_hwm_mb(proc.pid), 1))
            except OSError:
                continue
        return out

    def cpu_s(self) -> float:
        """User + system CPU seconds of the live tree so far."""
        return tree_cpu_s(self._tree())

    def stop(self) -> float:
        """Stop sampling; returns the peak summed RSS in MB."""
        self._done.set()
        self._thread.join()
        return self.peak_mb
