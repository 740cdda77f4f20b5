"""Burrow-like consumer status, from a sliding window of observed commits (pure: no I/O).

Nothing here reads a clock or a broker: observations come in with their times, evaluations
take ``now``. The same rules serve the long-running exporter (a window of the last
``lag.window`` commits, default 10) and the one-shot ``stream-infer lag`` (a window of the
``--samples`` it takes, default 3, 1 s apart).

What counts as a commit. The broker does not say when a group committed, only what its
committed offset is; it is sampled. A sample is recorded in the partition's window as a
commit ``(offset, lag, at)`` when

- it is the first sample of the partition, or
- the committed offset differs from the last recorded one (a commit happened in between), or
- a live consumer owns the partition (it keeps committing: an auto-committing consumer
  re-commits its position on every interval, moved or not).

A sample that is none of these (no consumer, offset unchanged) is not a commit: time since
the last commit grows, which is what STOP reads.

The rules, per partition, given its current lag and its window (oldest first), first match
wins:

1. **OK** if the current lag is 0.
2. **UNKNOWN** if fewer than 2 samples of the partition were taken: one sample has no
   history to judge (``--samples 1``).
3. **STOP** if the time since the last commit exceeds the window's span (last commit's time
   minus first commit's time) and lag remains: the consumer stopped committing.
4. **REWIND** if the committed offset went backwards between two commits of the window.
5. **OK** if the lag was 0 at any commit of the window: it caught up within the window.
6. **STALL** if every commit in the window is the same offset (and lag > 0): a consumer is
   there, committing, but not moving.
7. **WARN** if the offsets advance but the lag never decreases between two commits: the
   consumer is slower than the producers.
8. **OK** otherwise.

A partition with nothing committed has no status (``None``; its lag is blank, as in
``kafka-consumer-groups.sh``). A group takes its worst partition (severity OK < UNKNOWN <
WARN < STOP < STALL < REWIND); STOP, STALL and REWIND make the group **ERR**, WARN makes it
**WARN**; a group with no committed partition is **NOTFOUND**.

What the one-shot view can say (3 samples over 2 s): OK (caught up), STOP (lag > 0, no
consumer owns the partition and its offset did not move during the sampling: it says nothing
about *how long* it has been stopped), STALL (a live consumer did not move over the
sampling), REWIND, WARN (lag did not shrink over 2 s: noisy, a hint only). Burrow's STOP by
commit age over a 10-commit window needs the exporter's history.

This order follows docs/ARCHITECTURE.md ("Lag"); Burrow itself checks "lag was 0 somewhere in
the window" before STOP, so a consumer that was caught up and then died stays OK there until
its window rotates out, which never happens once it stops committing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise


class PartitionStatus(StrEnum):
    """A partition's verdict; the order of declaration is the severity order."""

    OK = "OK"
    UNKNOWN = "UNKNOWN"
    WARN = "WARN"
    STOP = "STOP"
    STALL = "STALL"
    REWIND = "REWIND"


class GroupStatus(StrEnum):
    """A group's verdict (Burrow's group-level statuses plus UNKNOWN)."""

    OK = "OK"
    UNKNOWN = "UNKNOWN"
    WARN = "WARN"
    ERR = "ERR"
    NOTFOUND = "NOTFOUND"


SEVERITY: tuple[PartitionStatus, ...] = tuple(PartitionStatus)
_ERRORS = frozenset({PartitionStatus.STOP, PartitionStatus.STALL, PartitionStatus.REWIND})


@dataclass(frozen=True)
class Commit:
    """One recorded commit: the committed offset, the lag then, and when it was seen
    (seconds, any clock shared by the observations and ``now``)."""

    offset: int
    lag: int
    at: float


def evaluate(window: Sequence[Commit], lag: int, now: float, samples: int) -> PartitionStatus:
    """The status of a partition whose current lag is ``lag``, given its commits (oldest
    first, at least one) and how many samples of it were taken; the rules in order as in
    the module docstring.

    Raises:
        ValueError: ``window`` is empty while ``lag`` > 0 (nothing to judge from).
    """
    if lag == 0:
        return PartitionStatus.OK
    if samples < 2:
        return PartitionStatus.UNKNOWN
    if not window:
        raise ValueError("a partition with lag needs at least one commit to be judged")
    first, last = window[0], window[-1]
    if now - last.at > last.at - first.at:
        return PartitionStatus.STOP
    pairs = list(pairwise(window))
    if any(b.offset < a.offset for a, b in pairs):
        return PartitionStatus.REWIND
    if any(c.lag == 0 for c in window):
        return PartitionStatus.OK
    if all(c.offset == first.offset for c in window):
        return PartitionStatus.STALL
    if all(b.lag >= a.lag for a, b in pairs):
        return PartitionStatus.WARN
    return PartitionStatus.OK


def worst(statuses: Iterable[PartitionStatus]) -> PartitionStatus | None:
    """The most severe of ``statuses`` (None for none)."""
    return max(statuses, key=SEVERITY.index, default=None)


def group_status(statuses: Iterable[PartitionStatus | None]) -> GroupStatus:
    """A group's status from its partitions' (None = nothing committed: ignored)."""
    top = worst(s for s in statuses if s is not None)
    if top is None:
        return GroupStatus.NOTFOUND
    if top in _ERRORS:
        return GroupStatus.ERR
    return GroupStatus(top.value)


@dataclass
class CommitWindow:
    """The last ``size`` commits of one partition, fed with samples (module docstring)."""

    size: int
    commits: deque[Commit] = field(init=False)
    samples: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.size < 2:
            raise ValueError(f"a window needs at least 2 commits, not {self.size}")
        self.commits = deque(maxlen=self.size)

    def observe(self, offset: int, lag: int, at: float, owned: bool) -> None:
        """Record one sample: the committed offset, the lag, when, and whether a live
        consumer owns the partition now."""
        self.samples += 1
        if not self.commits or offset != self.commits[-1].offset or owned:
            self.commits.append(Commit(offset, lag, at))

    def status(self, lag: int, now: float) -> PartitionStatus:
        """:func:`evaluate` over this window."""
        return evaluate(tuple(self.commits), lag, now, self.samples)


@dataclass
class StatusTracker:
    """Windows for every (group, topic, partition) seen; forgets none (partitions are few)."""

    size: int
    windows: dict[tuple[str, str, int], CommitWindow] = field(default_factory=dict)

    def observe(
        self, key: tuple[str, str, int], offset: int, lag: int, at: float, owned: bool
    ) -> PartitionStatus:
        """Record a sample of ``key`` and return its status as of that sample."""
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = CommitWindow(self.size)
        window.observe(offset, lag, at, owned)
        return window.status(lag, at)
