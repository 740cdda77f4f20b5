"""The feature definitions, at their edges: window bounds, ties, idempotency, terminal days."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream_infer.features.definitions import (
    FEATURE_NAMES,
    SECONDS_PER_DAY,
    CustomerHistory,
    request_features,
    terminal_features,
)


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())  # type: ignore[misc]


def test_fifteen_ordered_inputs() -> None:
    assert len(FEATURE_NAMES) == 15 and len(set(FEATURE_NAMES)) == 15
    assert FEATURE_NAMES[:3] == ("tx_amount", "tx_during_weekend", "tx_during_night")


@pytest.mark.parametrize(
    ("when", "weekend", "night"),
    [
        (ts(2026, 4, 4, 6, 59, 59), 1.0, 1.0),  # Saturday 06:59
        (ts(2026, 4, 5, 7, 0, 0), 1.0, 0.0),  # Sunday 07:00
        (ts(2026, 4, 6, 0, 0, 0), 0.0, 1.0),  # Monday midnight
        (ts(2026, 4, 3, 23, 59, 59), 0.0, 0.0),  # Friday late
    ],
)
def test_request_flags(when: int, weekend: float, night: float) -> None:
    assert request_features(when, 9.5) == (9.5, weekend, night)


def test_customer_window_is_half_open_and_includes_current() -> None:
    h = CustomerHistory()
    t = ts(2026, 4, 10, 12, 0, 0)
    h.add(t - SECONDS_PER_DAY, 0, 100.0, "a")  # exactly 1 day before: outside the 1d window
    h.add(t - SECONDS_PER_DAY + 1, 1, 50.0, "b")  # just inside
    i = h.add(t, 2, 10.0, "c")
    nb1, avg1, nb7, avg7, nb30, _ = h.features_at(i)
    assert (nb1, avg1) == (2.0, 30.0)
    assert (nb7, avg7, nb30) == (3.0, 160.0 / 3, 3.0)


def test_redelivery_is_idempotent_and_later_events_do_not_leak() -> None:
    h = CustomerHistory()
    t = ts(2026, 4, 10)
    first = h.features_at(h.add(t, 5, 10.0, "x"))
    h.add(t + 60, 6, 1000.0, "y")
    again = h.add(t, 5, 10.0, "x")
    assert h.features_at(again) == first
    assert len(h) == 2


def test_same_second_ties_follow_sequence() -> None:
    h = CustomerHistory()
    t = ts(2026, 4, 10)
    h.add(t, 9, 30.0, "late")
    early = h.add(t, 3, 10.0, "early")  # arrives second but sorts first
    assert early == 0
    assert h.features_at(0)[:2] == (1.0, 10.0)
    assert h.features_at(1)[:2] == (2.0, 20.0)


def test_prune_keeps_what_windows_need() -> None:
    h = CustomerHistory()
    t = ts(2026, 4, 10)
    for i in range(40):
        h.add(t + i * SECONDS_PER_DAY, i, 1.0, str(i))
    h.prune(t + 39 * SECONDS_PER_DAY)
    assert len(h) == 30


def test_terminal_window_is_days_before_the_delay() -> None:
    day = 20_000
    daily = {
        day - 8: (10, 5),  # in every window
        day - 7: (99, 99),  # day D-7: labels not final, never read
        day - 14: (10, 0),  # 7d window edge: [D-14, D-7)
        day - 15: (10, 10),  # only the 30d window
        day - 37: (1, 1),  # in 30d window: [D-37, D-7)
        day - 38: (1000, 1000),  # outside everything
    }
    f = terminal_features(daily, day)
    assert f[0:2] == (10.0, 0.5)
    assert f[2:4] == (20.0, 0.25)
    assert f[4:6] == (31.0, 16 / 31)
    assert terminal_features({}, day) == (0.0,) * 6
