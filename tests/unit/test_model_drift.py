"""PSI on known distributions, and the per-version window accounting of DriftMonitor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_infer.config import RolloutSettings
from stream_infer.model.drift import (
    PSI_FLOOR,
    DriftMonitor,
    Reference,
    bin_counts,
    psi,
    psi_between,
    reading,
)

CUTS = np.round(np.arange(1, 10) / 10, 1)  # 0.1 ... 0.9


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_identical_distributions_are_stable() -> None:
    rng = np.random.default_rng(1)
    ref = Reference.from_scores(rng.beta(2, 8, 100_000))
    value = ref.psi_of(rng.beta(2, 8, 100_000))
    assert 0 <= value < 0.005
    assert reading(value) == "stable"


def test_shifted_distribution_is_significant() -> None:
    rng = np.random.default_rng(2)
    ref = Reference.from_scores(rng.normal(0.0, 1.0, 50_000))
    value = ref.psi_of(rng.normal(1.0, 1.0, 50_000))
    assert value > 0.25
    assert reading(value) == "significant"


def test_hand_computed_case_with_an_empty_bin() -> None:
    # 100 scores against equal reference shares: 20 in the first bin, 10 in each of the next
    # eight, none in the last (floored to 1e-4).
    scores = [0.05] * 20 + [b + 0.05 for b in CUTS[:8] for _ in range(10)]
    counts = bin_counts(scores, CUTS)
    assert counts.tolist() == [20, 10, 10, 10, 10, 10, 10, 10, 10, 0]
    expected = (0.2 - 0.1) * math.log(0.2 / 0.1) + (PSI_FLOOR - 0.1) * math.log(PSI_FLOOR / 0.1)
    assert Reference.from_cuts(CUTS).psi_of(scores) == pytest.approx(expected, rel=1e-12)
    assert psi(counts, np.full(10, 0.1)) == pytest.approx(expected, rel=1e-12)


def test_psi_is_symmetric_and_zero_on_equal_histograms() -> None:
    a, b = [5, 1, 4], [2, 2, 6]
    assert psi(a, b) == pytest.approx(psi(b, a))
    assert psi([3, 3, 4], [30, 30, 40]) == 0.0


def test_reading_thresholds() -> None:
    assert reading(0.099) == "stable"
    assert reading(0.1) == reading(0.25) == "moderate"
    assert reading(0.2501) == "significant"


def test_bins_are_half_open_a_cut_point_falls_above() -> None:
    assert bin_counts([0.1, 0.0999, 0.9, 1.0], CUTS).tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]


def test_reference_from_tied_scores_uses_its_real_histogram() -> None:
    # Most fraud scores sit at the same low value: the deciles collapse, and equal shares
    # would report drift where there is none.
    rng = np.random.default_rng(3)

    def sample() -> np.ndarray:
        return np.where(rng.random(20_000) < 0.7, 0.01, rng.random(20_000))

    ref = Reference.from_scores(sample())
    assert ref.psi_of(sample()) < 0.01
    assert Reference.from_cuts(ref.edges).psi_of(sample()) > 0.25


def test_reference_from_manifest_histogram() -> None:
    ref = Reference.from_cuts(CUTS.tolist(), [10, 10, 10, 10, 10, 10, 10, 10, 10, 10])
    assert ref.shares.tolist() == pytest.approx([0.1] * 10)
    with pytest.raises(ValueError, match="shares"):
        Reference.from_cuts(CUTS, [1, 2])
    with pytest.raises(ValueError, match="sorted"):
        Reference.from_cuts([0.5, 0.2])


def test_psi_refuses_mismatched_or_empty_histograms() -> None:
    with pytest.raises(ValueError, match="alike"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        psi([0, 0], [1, 1])
    assert math.isnan(psi_between([], [0.1, 0.2]))


def _monitor(clock: FakeClock, **overrides: object) -> tuple[DriftMonitor, Reference]:
    settings = RolloutSettings(**{"window_scores": 1000, "window_seconds": 30.0, **overrides})
    ref = Reference.from_cuts(CUTS)
    return DriftMonitor(settings, {2: ref}, clock=clock), ref


def test_window_closes_by_count_with_the_psi_of_its_scores() -> None:
    clock = FakeClock()
    monitor, ref = _monitor(clock)
    rng = np.random.default_rng(4)
    batches = [rng.random(300) ** 2 for _ in range(4)]
    closed = []
    for batch in batches:
        clock.now += 1
        closed += monitor.observe(2, batch)
    assert len(closed) == 1
    window = closed[0]
    assert (window.version, window.n, window.events, window.calls) == (2, 1200, 1200, 4)
    assert window.closed_by == "count"
    assert window.psi == pytest.approx(ref.psi_of(np.concatenate(batches)), rel=1e-12)
    assert window.duration_s == pytest.approx(3.0)
    assert window.error_rate == 0.0
    # The next call opens a fresh window.
    assert monitor.observe(2, batches[0]) == []
    assert monitor.poll() == []


def test_window_closes_by_time_and_counts_errors_per_version() -> None:
    clock = FakeClock()
    monitor, ref = _monitor(clock)
    monitor.observe(2, [0.05, 0.15, 0.95])
    monitor.observe_error(2, events=5)
    monitor.observe(1, [0.5])  # another version: no reference, its own window
    clock.now += 29.9
    assert monitor.poll() == []
    clock.now += 0.1
    closed = {w.version: w for w in monitor.poll()}
    assert set(closed) == {1, 2}
    two = closed[2]
    assert (two.n, two.events, two.calls, two.errors) == (3, 8, 2, 1)
    assert two.error_rate == 0.5
    assert two.closed_by == "time"
    assert two.psi == pytest.approx(ref.psi_of([0.05, 0.15, 0.95]))
    assert closed[1].psi is None and closed[1].reading is None
    assert closed[1].n == 1


def test_a_window_of_only_errors_has_no_psi() -> None:
    clock = FakeClock()
    monitor, _ = _monitor(clock, window_scores=100)
    closed = monitor.observe_error(2, events=60) + monitor.observe_error(2, events=60)
    assert len(closed) == 1
    assert closed[0].psi is None
    assert (closed[0].events, closed[0].error_rate) == (120, 1.0)


def test_a_new_reference_applies_from_the_next_window() -> None:
    clock = FakeClock()
    monitor, ref = _monitor(clock, window_scores=4)
    monitor.observe(2, [0.05, 0.05])
    other = Reference.from_cuts([0.5])
    monitor.set_reference(2, other)
    (first,) = monitor.observe(2, [0.95, 0.95])
    assert first.psi == pytest.approx(ref.psi_of([0.05, 0.05, 0.95, 0.95]))
    (second,) = monitor.observe(2, [0.05, 0.05, 0.95, 0.95])
    assert second.psi == pytest.approx(0.0)
