"""The pacing scheduler is open loop: due times come from the start, never from past sends."""

from __future__ import annotations

import pytest

from loadgen.pacing import (
    RatePacing,
    Scheduler,
    TimeScalePacing,
    Unpaced,
    choose_pacing,
)


class FakeClock:
    """Monotonic seconds moved by hand; ``sleep`` advances it exactly and records the call."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scheduler(pacing: RatePacing | TimeScalePacing | Unpaced, clock: FakeClock) -> Scheduler:
    s = Scheduler(pacing, clock=clock, wall_ns=lambda: 5_000_000_000, sleep=clock.sleep)
    s.start()
    return s


def test_rate_mode_due_times_are_start_plus_i_over_rate() -> None:
    clock = FakeClock()
    s = scheduler(RatePacing(100.0), clock)
    for i in range(5):
        assert s.wait_until(s.due(i, 0)) == 0.0
        assert clock.now == pytest.approx(1000.0 + i / 100)
    assert s.intended_wall_ns(s.due_offset_s(3, 0)) == 5_000_000_000 + 30_000_000


def test_a_late_send_does_not_push_back_the_schedule() -> None:
    clock = FakeClock()
    s = scheduler(RatePacing(10.0), clock)
    sent_at: list[float] = []
    for i in range(8):
        late = s.wait_until(s.due(i, 0))
        sent_at.append(clock.now)
        if i == 2:
            clock.now += 0.55  # this send stalls for 0.55 s
        assert late >= 0.0
    # Due times stay on the grid start + i/10 ...
    assert [s.due(i, 0) - 1000.0 for i in range(8)] == pytest.approx([i / 10 for i in range(8)])
    # ... so the overdue ones (due 0.3..0.7, clock at 0.75) go out at once, back to back,
    # and the schedule is not shifted by the stall.
    assert sent_at[3:8] == pytest.approx([1000.75] * 5)
    assert s.wait_until(s.due(8, 0)) == 0.0
    assert clock.now == pytest.approx(1000.8)


def test_overdue_messages_report_their_lateness_and_never_sleep() -> None:
    clock = FakeClock()
    s = scheduler(RatePacing(1000.0), clock)
    clock.now += 2.0
    n_sleeps = len(clock.sleeps)
    assert s.wait_until(s.due(500, 0)) == pytest.approx(1.5)
    assert len(clock.sleeps) == n_sleeps


def test_time_scale_mode_divides_event_time_deltas() -> None:
    clock = FakeClock()
    origin = 1_600_000_000 * 10**9
    s = scheduler(TimeScalePacing(60.0, origin), clock)
    events = [origin, origin + 60 * 10**9, origin + 600 * 10**9]
    offsets = [s.due_offset_s(slot, t) for slot, t in enumerate(events)]
    assert offsets == pytest.approx([0.0, 1.0, 10.0])
    for slot, t in enumerate(events):
        s.wait_until(s.due(slot, t))
    assert clock.now == pytest.approx(1010.0)
    # Slots do not matter in this mode, and nothing is due before the start.
    assert s.due_offset_s(99, origin) == 0.0
    assert s.due_offset_s(0, origin - 10**9) == 0.0


def test_unpaced_never_waits() -> None:
    clock = FakeClock()
    s = scheduler(Unpaced(), clock)
    for i in range(100):
        assert s.wait_until(s.due(i, i * 10**12)) == 0.0
    assert clock.sleeps == []


def test_choose_pacing_and_validation() -> None:
    assert isinstance(choose_pacing(None, None, 0), Unpaced)
    assert choose_pacing(5.0, None, 0) == RatePacing(5.0)
    assert choose_pacing(None, 2.0, 7) == TimeScalePacing(2.0, 7)
    assert RatePacing(5.0).target_rate == 5.0 and Unpaced().target_rate is None
    with pytest.raises(ValueError, match="not both"):
        choose_pacing(1.0, 1.0, 0)
    with pytest.raises(ValueError, match="positive"):
        RatePacing(0.0)
    with pytest.raises(ValueError, match="positive"):
        TimeScalePacing(-1.0, 0)
    with pytest.raises(RuntimeError, match="start"):
        Scheduler(Unpaced()).due(0, 0)
