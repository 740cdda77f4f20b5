"""Which sent transactions got a score: missing, duplicated and unexpected ids (pure numpy).

loadgen's transaction ids are non-negative integers (decimal strings on the wire), so the tally
is an int64 array of the sent ids, sorted, with one counter each: 1.75M ids take ~21 MB and a
batch of seen ids is matched with one binary search, not a Python set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]

#: Ids listed verbatim in a report; the rest are only counted.
SAMPLE_SIZE: Final = 20


@dataclass(frozen=True)
class Accounting:
    """Scores matched against the sent transactions.

    ``scored``: sent ids seen at least once; ``missing``: sent ids never seen; ``duplicated``:
    sent ids seen more than once; ``duplicate_records``: records beyond the first per id;
    ``unexpected``: records whose id was not sent (or is not a loadgen id).
    """

    sent: int
    scored: int
    missing: int
    duplicated: int
    duplicate_records: int
    unexpected: int
    missing_sample: tuple[int, ...] = ()
    duplicated_sample: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        """Every sent id was scored exactly once and nothing else arrived."""
        return self.missing == 0 and self.duplicated == 0 and self.unexpected == 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "sent": self.sent,
            "scored": self.scored,
            "missing": self.missing,
            "duplicated": self.duplicated,
            "duplicate_records": self.duplicate_records,
            "unexpected": self.unexpected,
            "missing_sample": [str(i) for i in self.missing_sample],
            "duplicated_sample": [str(i) for i in self.duplicated_sample],
        }


def parse_id(raw: object) -> int | None:
    """A wire id as loadgen's integer id, or None when it is not one."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw if raw >= 0 else None
    if isinstance(raw, str) and raw.isdigit() and raw.isascii():
        return int(raw)
    return None


class IdTally:
    """Counts how often each expected id is seen. Not thread-safe (callers lock)."""

    def __init__(self, expected: Iterable[int] | Ints) -> None:
        raw = expected if isinstance(expected, np.ndarray) else list(expected)
        self._ids: Ints = np.unique(np.asarray(raw, dtype=np.int64))
        self._counts = np.zeros(len(self._ids), dtype=np.int32)
        self._distinct = 0
        self._unexpected = 0

    @property
    def expected(self) -> int:
        """Distinct ids expected."""
        return len(self._ids)

    @property
    def distinct_seen(self) -> int:
        """Expected ids seen at least once so far."""
        return self._distinct

    @property
    def complete(self) -> bool:
        """Every expected id has been seen at least once."""
        return self._distinct == len(self._ids)

    def add(self, ids: Ints) -> None:
        """Count a batch of seen ids (repeats within the batch count as duplicates)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        pos = np.searchsorted(self._ids, ids)
        inside = pos < len(self._ids)
        known = np.zeros(len(ids), dtype=np.bool_)
        known[inside] = self._ids[pos[inside]] == ids[inside]
        hits = pos[known]
        self._unexpected += int(len(ids) - len(hits))
        first = np.unique(hits)
        self._distinct += int(np.count_nonzero(self._counts[first] == 0))
        np.add.at(self._counts, hits, 1)

    def add_unexpected(self, n: int = 1) -> None:
        """Count records whose id could not even be parsed."""
        self._unexpected += n

    def result(self, sample: int = SAMPLE_SIZE) -> Accounting:
        """The accounting so far, with up to ``sample`` missing and duplicated ids listed."""
        missing = self._ids[self._counts == 0]
        dup_mask = self._counts > 1
        return Accounting(
            sent=len(self._ids),
            scored=self._distinct,
            missing=len(missing),
            duplicated=int(np.count_nonzero(dup_mask)),
            duplicate_records=int((self._counts[dup_mask] - 1).sum()),
            unexpected=self._unexpected,
            missing_sample=tuple(int(i) for i in missing[:sample]),
            duplicated_sample=tuple(int(i) for i in self._ids[dup_mask][:sample]),
        )


def account(expected: Iterable[int] | Ints, seen: Iterable[object]) -> Accounting:
    """Match ``seen`` wire ids (ints or decimal strings) against the ``expected`` ids."""
    tally = IdTally(expected)
    parsed = [parse_id(s) for s in seen]
    tally.add(np.asarray([p for p in parsed if p is not None], dtype=np.int64))
    tally.add_unexpected(sum(1 for p in parsed if p is None))
    return tally.result()
