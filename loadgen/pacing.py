"""When each message is due: an open-loop schedule, pure and clock-injectable.

The schedule is fixed when it starts. Message k's due time depends only on the start and on k's
slot (rate mode) or event time (time-scale mode), never on when earlier messages actually went
out: a late send does not push later ones back, it makes them overdue, and they go out at once.
That is what keeps a load test honest: the intended send time (the due time) is what latency is
measured from, so a stalled producer shows up as latency instead of hiding as a lower rate
(coordinated omission).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

NS_PER_S: Final = 1_000_000_000


class Pacing(Protocol):
    """Maps a message to its due offset (seconds after the schedule's start)."""

    def offset_s(self, slot: int, event_time_ns: int) -> float:
        """Seconds after the start at which the message is due."""
        ...

    @property
    def target_rate(self) -> float | None:
        """Transactions per second aimed at, when the mode has one."""
        ...


@dataclass(frozen=True)
class RatePacing:
    """``rate`` transactions a second: slot k is due at ``k / rate``.

    Raises:
        ValueError: ``rate`` is not positive.
    """

    rate: float

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError("rate must be positive")

    def offset_s(self, slot: int, event_time_ns: int) -> float:
        return slot / self.rate

    @property
    def target_rate(self) -> float | None:
        return self.rate


@dataclass(frozen=True)
class TimeScalePacing:
    """Event time compressed by ``factor``: due at ``(event_time - origin) / factor``.

    Raises:
        ValueError: ``factor`` is not positive.
    """

    factor: float
    origin_ns: int

    def __post_init__(self) -> None:
        if not self.factor > 0:
            raise ValueError("time-scale factor must be positive")

    def offset_s(self, slot: int, event_time_ns: int) -> float:
        return max(0.0, (event_time_ns - self.origin_ns) / NS_PER_S / self.factor)

    @property
    def target_rate(self) -> float | None:
        return None


@dataclass(frozen=True)
class Unpaced:
    """As fast as possible: everything is due at the start."""

    def offset_s(self, slot: int, event_time_ns: int) -> float:
        return 0.0

    @property
    def target_rate(self) -> float | None:
        return None


def choose_pacing(rate: float | None, time_scale: float | None, origin_ns: int) -> Pacing:
    """The pacing for CLI-style options (at most one of ``rate`` and ``time_scale``).

    Raises:
        ValueError: both are given, or one is not positive.
    """
    if rate is not None and time_scale is not None:
        raise ValueError("give a rate or a time-scale factor, not both")
    if rate is not None:
        return RatePacing(rate)
    if time_scale is not None:
        return TimeScalePacing(time_scale, origin_ns)
    return Unpaced()


class Scheduler:
    """An open-loop schedule over a :class:`Pacing`, anchored when :meth:`start` is called.

    ``clock`` (monotonic seconds), ``wall_ns`` (epoch ns) and ``sleep`` are injectable so tests
    drive time by hand; the replayer passes ``producer.poll`` as ``sleep`` so delivery callbacks
    are served while it waits.
    """

    def __init__(
        self,
        pacing: Pacing,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.pacing = pacing
        self._clock = clock
        self._wall_ns = wall_ns
        self._sleep = sleep
        self._start: float | None = None
        self._start_wall_ns = 0

    def start(self) -> None:
        """Anchor the schedule at now (monotonic for waiting, wall clock for the headers)."""
        self._start = self._clock()
        self._start_wall_ns = self._wall_ns()

    @property
    def started_at(self) -> float:
        """Monotonic time at which the schedule started.

        Raises:
            RuntimeError: :meth:`start` was not called.
        """
        return self._anchor()

    @property
    def started_wall_ns(self) -> int:
        """Wall-clock epoch ns at which the schedule started."""
        return self._start_wall_ns

    def _anchor(self) -> float:
        if self._start is None:
            raise RuntimeError("Scheduler.start() was not called")
        return self._start

    def due_offset_s(self, slot: int, event_time_ns: int) -> float:
        """Seconds after the start at which this message is due."""
        return self.pacing.offset_s(slot, event_time_ns)

    def due(self, slot: int, event_time_ns: int) -> float:
        """Monotonic time at which this message is due (independent of any send so far)."""
        return self._anchor() + self.pacing.offset_s(slot, event_time_ns)

    def intended_wall_ns(self, due_offset_s: float) -> int:
        """The due time as epoch ns (what goes in the intended-send header)."""
        self._anchor()
        return self._start_wall_ns + round(due_offset_s * NS_PER_S)

    def elapsed_s(self) -> float:
        """Seconds since the start."""
        return self._clock() - self._anchor()

    def wait_until(self, due: float) -> float:
        """Block until ``due``; return how late we are then (seconds, 0 if on time).

        An overdue message returns at once: the schedule never slips to absorb lateness.
        """
        now = self._clock()
        while now < due:
            self._sleep(due - now)
            now = self._clock()
        return now - due
