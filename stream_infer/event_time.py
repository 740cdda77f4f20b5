"""Events from the future: the one rule every entry point applies to an event's time.

An event dated more than ``events.max_future_s`` ahead of the wall clock is refused (the worker
and the label processor dead-letter it, the sidecar answers 400), because event time moves
state that never moves back: a customer's history is pruned relative to its newest entry, and
the label watermark only rises. The check is against the wall clock alone, never against other
events, so a replay of history is never refused (docs/ARCHITECTURE.md, "Events from the
future").

A :class:`FutureLimit` is taken once per batch from a clock the caller is given, so decoding
stays a pure function of its inputs and tests choose the time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from stream_infer.errors import DeadLetterError

#: The metrics' low-cardinality kind of the reason (the text before its first colon).
REASON_KIND: Final = "event from the future"
_UNITS: Final = ((365 * 86400, "year"), (86400, "day"), (3600, "hour"), (60, "minute"))


@dataclass(frozen=True, slots=True)
class FutureLimit:
    """The latest event time accepted at one instant: ``now_s + max_future_s`` (epoch s)."""

    now_s: float
    max_future_s: float

    @classmethod
    def at(cls, clock: Callable[[], float], max_future_s: float) -> FutureLimit:
        """The limit as of ``clock()`` (epoch seconds, e.g. ``time.time``)."""
        return cls(clock(), max_future_s)

    @property
    def limit_s(self) -> float:
        """The latest accepted event time, epoch seconds (inclusive)."""
        return self.now_s + self.max_future_s

    def allows(self, epoch_s: float) -> bool:
        """True when an event at ``epoch_s`` is not too far ahead of the wall clock."""
        return epoch_s <= self.limit_s

    def reason(self, epoch_s: float, field: str = "tx_datetime") -> str:
        """Why an event at ``epoch_s`` is refused, e.g. ``event from the future: tx_datetime
        2999-01-01T00:00:00Z is 973 years ahead of the wall clock (events.max_future_s=3600)``.
        """
        when = datetime.fromtimestamp(epoch_s, tz=UTC).isoformat().replace("+00:00", "Z")
        ahead = _duration(epoch_s - self.now_s)
        limit = f"{self.max_future_s:g}"
        return (
            f"{REASON_KIND}: {field} {when} is {ahead} ahead of the wall clock "
            f"(events.max_future_s={limit})"
        )

    def check(self, epoch_s: float, field: str = "tx_datetime") -> None:
        """Raises DeadLetterError: ``epoch_s`` is past :attr:`limit_s` (:meth:`reason`)."""
        if epoch_s > self.limit_s:
            raise DeadLetterError(self.reason(epoch_s, field))


def _duration(seconds: float) -> str:
    """A whole number of the largest unit that fits (``973 years``, ``2 hours``, ``90 seconds``)."""
    for size, unit in _UNITS:
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    n = int(seconds)
    return f"{n} second{'s' if n != 1 else ''}"
