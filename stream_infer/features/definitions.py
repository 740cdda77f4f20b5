"""The model's 15 inputs: the one place their math lives.

Offline batch (training), the streaming worker and the sidecar all call these functions, so a
transaction gets the same features whichever way it is scored. Definitions (DESIGN.md):

- request-time: ``tx_amount``; ``tx_during_weekend`` (UTC Saturday/Sunday); ``tx_during_night``
  (UTC hour <= 6).
- customer windows (streaming, to the second): transactions with time in (t - n days, t], the
  current one included; their count and mean amount, n in 1, 7, 30.
- terminal windows (daily, behind the 7-day label delay): transactions dated on the whole UTC
  days [D - 7 - n, D - 7), where D is t's date; their count and the fraction that were fraud
  (0 when there are none).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Final

import numpy as np
import numpy.typing as npt

SECONDS_PER_DAY: Final = 86_400
WINDOWS_DAYS: Final = (1, 7, 30)
LABEL_DELAY_DAYS: Final = 7
#: Longest history any feature reads, in seconds.
CUSTOMER_HORIZON_S: Final = max(WINDOWS_DAYS) * SECONDS_PER_DAY
#: Oldest terminal day a row for day D reads is D - LABEL_DELAY_DAYS - max(WINDOWS_DAYS).
TERMINAL_HORIZON_DAYS: Final = LABEL_DELAY_DAYS + max(WINDOWS_DAYS)

REQUEST_FEATURES: Final = ("tx_amount", "tx_during_weekend", "tx_during_night")
CUSTOMER_FEATURES: Final = tuple(
    name for n in WINDOWS_DAYS for name in (f"customer_nb_tx_{n}d", f"customer_avg_amount_{n}d")
)
TERMINAL_FEATURES: Final = tuple(
    name for n in WINDOWS_DAYS for name in (f"terminal_nb_tx_{n}d", f"terminal_risk_{n}d")
)
#: The model's inputs, in the column order of its input matrix.
FEATURE_NAMES: Final = REQUEST_FEATURES + CUSTOMER_FEATURES + TERMINAL_FEATURES
N_FEATURES: Final = len(FEATURE_NAMES)


def day_of(epoch_seconds: int) -> int:
    """The UTC day number (days since 1970-01-01) of an epoch timestamp."""
    return epoch_seconds // SECONDS_PER_DAY


def request_features(epoch_seconds: int, amount: float) -> tuple[float, float, float]:
    """``(tx_amount, tx_during_weekend, tx_during_night)`` for one transaction."""
    # 1970-01-01 was a Thursday: weekday index 0=Monday -> (day + 3) % 7; 5, 6 = weekend.
    weekday = (epoch_seconds // SECONDS_PER_DAY + 3) % 7
    hour = (epoch_seconds % SECONDS_PER_DAY) // 3600
    return (amount, 1.0 if weekday >= 5 else 0.0, 1.0 if hour <= 6 else 0.0)


def request_matrix(
    epoch_seconds: npt.NDArray[np.int64], amounts: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """:func:`request_features` of a whole batch: an ``(n, 3)`` float64 matrix."""
    out = np.empty((len(epoch_seconds), 3), dtype=np.float64)
    out[:, 0] = amounts
    out[:, 1] = (epoch_seconds // SECONDS_PER_DAY + 3) % 7 >= 5
    out[:, 2] = (epoch_seconds % SECONDS_PER_DAY) // 3600 <= 6
    return out


class CustomerHistory:
    """One customer's recent transactions, time-indexed by ``(time, seq)``.

    ``seq`` orders transactions that share a second (the partition offset in the stream, the
    row order offline). Windows are evaluated at an entry's own position, so features are a pure
    function of the history: a re-delivered event gets exactly the features it got first, and
    later events never leak into an earlier one's window.
    """

    __slots__ = ("amounts", "cum", "ids", "seqs", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.seqs: list[int] = []
        self.amounts: list[float] = []
        self.ids: list[str] = []
        # Prefix sums of amounts (cum[i] = sum(amounts[:i])): a window's mean in O(1).
        self.cum: list[float] = [0.0]

    def __len__(self) -> int:
        return len(self.times)

    def add(self, epoch_seconds: int, seq: int, amount: float, transaction_id: str) -> int:
        """Insert a transaction unless it is already there; return its index.

        Idempotent by ``transaction_id`` (among entries of the same second), so re-delivery or
        a second replay of the same event never counts it twice.
        """
        times = self.times
        lo = bisect_left(times, epoch_seconds)
        hi = bisect_right(times, epoch_seconds, lo)
        for i in range(lo, hi):
            if self.ids[i] == transaction_id:
                return i
        pos = hi
        # Same second: keep seq order so ties resolve as they do offline.
        while pos > lo and self.seqs[pos - 1] > seq:
            pos -= 1
        if pos == len(times):
            times.append(epoch_seconds)
            self.seqs.append(seq)
            self.amounts.append(amount)
            self.ids.append(transaction_id)
            self.cum.append(self.cum[-1] + amount)
        else:  # a late event: rare, so rebuilding the prefix sums after it is fine
            times.insert(pos, epoch_seconds)
            self.seqs.insert(pos, seq)
            self.amounts.insert(pos, amount)
            self.ids.insert(pos, transaction_id)
            self.cum[pos + 1 :] = list(accumulate(self.amounts[pos:], initial=self.cum[pos]))[1:]
        return pos

    def features_at(self, index: int) -> tuple[float, float, float, float, float, float]:
        """Customer window features for the entry at ``index`` (itself included)."""
        times = self.times
        cum = self.cum
        t = times[index]
        end = index + 1
        total = cum[end]
        # Unrolled over WINDOWS_DAYS = (1, 7, 30): this runs once per event on the hot path.
        s1 = bisect_right(times, t - SECONDS_PER_DAY, 0, end)
        s7 = bisect_right(times, t - 7 * SECONDS_PER_DAY, 0, s1)
        s30 = bisect_right(times, t - 30 * SECONDS_PER_DAY, 0, s7)
        n1, n7, n30 = end - s1, end - s7, end - s30
        return (
            float(n1),
            (total - cum[s1]) / n1,
            float(n7),
            (total - cum[s7]) / n7,
            float(n30),
            (total - cum[s30]) / n30,
        )

    def prune(self, now_seconds: int) -> None:
        """Forget entries no window evaluated at or after ``now_seconds`` can reach."""
        cut = bisect_right(self.times, now_seconds - CUSTOMER_HORIZON_S)
        if cut:
            del self.times[:cut], self.seqs[:cut], self.amounts[:cut], self.ids[:cut]
            self.cum = list(accumulate(self.amounts, initial=0.0))


def terminal_features(
    daily: Mapping[int, tuple[int, int]], day: int
) -> tuple[float, float, float, float, float, float]:
    """Terminal window features for a transaction on UTC day ``day``.

    Args:
        daily: the terminal's ``{day: (transactions, frauds)}`` counts (labelled days only).
        day: the transaction's UTC day D.
    """
    out: list[float] = []
    end = day - LABEL_DELAY_DAYS
    for n in WINDOWS_DAYS:
        nb = 0
        fraud = 0
        for d in range(end - n, end):
            counts = daily.get(d)
            if counts is not None:
                nb += counts[0]
                fraud += counts[1]
        out.append(float(nb))
        out.append(fraud / nb if nb else 0.0)
    return (out[0], out[1], out[2], out[3], out[4], out[5])


def assemble(
    request: Sequence[float], customer: Sequence[float], terminal: Sequence[float]
) -> list[float]:
    """The model's input row, in :data:`FEATURE_NAMES` order."""
    return [*request, *customer, *terminal]
