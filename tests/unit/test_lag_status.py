"""The Burrow-like rules of stream_infer.lag.status, each rule and their order, on synthetic
commit histories (no broker, no clock)."""

from __future__ import annotations

import pytest

from stream_infer.lag.status import (
    Commit,
    CommitWindow,
    GroupStatus,
    PartitionStatus,
    StatusTracker,
    evaluate,
    group_status,
)

S = PartitionStatus


def history(*entries: tuple[int, int]) -> list[Commit]:
    """Commits (offset, lag) one second apart, from t=0."""
    return [Commit(offset, lag, float(t)) for t, (offset, lag) in enumerate(entries)]


def judge(window: list[Commit], lag: int, now: float | None = None) -> PartitionStatus:
    return evaluate(window, lag, window[-1].at if now is None else now, samples=len(window))


def test_rule_1_no_lag_is_ok_whatever_the_history() -> None:
    # A rewinding, long-stopped history: still OK once nothing waits.
    window = history((10, 5), (4, 5), (4, 5))
    assert judge(window, lag=0, now=1000.0) is S.OK


def test_rule_2_one_sample_cannot_judge_lag() -> None:
    assert evaluate(history((10, 5)), 5, now=0.0, samples=1) is S.UNKNOWN
    assert evaluate(history((10, 0)), 0, now=0.0, samples=1) is S.OK


def test_rule_3_stop_when_time_since_last_commit_exceeds_the_window_span() -> None:
    window = history((10, 3), (12, 3), (14, 3))  # span 2 s
    assert judge(window, lag=3, now=4.5) is S.STOP
    # Exactly the span is not beyond it.
    assert judge(window, lag=3, now=4.0) is not S.STOP


def test_stop_comes_before_rewind_and_before_lag_zero_in_the_window() -> None:
    rewound = history((10, 3), (8, 5), (8, 5))
    assert judge(rewound, lag=5, now=100.0) is S.STOP
    caught_up_then_died = history((10, 0), (10, 0), (10, 0))
    assert judge(caught_up_then_died, lag=7, now=100.0) is S.STOP


def test_a_single_commit_window_stops_as_soon_as_time_passes() -> None:
    # Span 0: any sample after the only commit, with lag, is STOP (the one-shot view of a
    # group with no consumer).
    window = history((10, 4))
    assert evaluate(window, 4, now=0.5, samples=2) is S.STOP
    assert evaluate(window, 4, now=0.0, samples=2) is S.STALL


def test_rule_4_rewind_when_an_offset_goes_backwards() -> None:
    assert judge(history((10, 5), (20, 5), (15, 9)), lag=9) is S.REWIND


def test_rewind_comes_before_lag_zero_in_the_window() -> None:
    assert judge(history((10, 0), (20, 0), (15, 4)), lag=4) is S.REWIND


def test_rule_5_ok_when_lag_was_zero_somewhere_in_the_window() -> None:
    # Same offset throughout (would be STALL) and lag growing (would be WARN): still OK.
    assert judge(history((10, 0), (10, 2), (10, 4)), lag=4) is S.OK


def test_rule_6_stall_when_every_commit_is_the_same_offset() -> None:
    assert judge(history((10, 5), (10, 5), (10, 8)), lag=8) is S.STALL


def test_stall_comes_before_warn() -> None:
    # Same offset and lag never decreasing: both rules match; STALL wins.
    assert judge(history((10, 5), (10, 6), (10, 7)), lag=7) is S.STALL


def test_rule_7_warn_when_offsets_advance_but_lag_never_decreases() -> None:
    assert judge(history((10, 5), (20, 5), (30, 9)), lag=9) is S.WARN


def test_rule_8_ok_when_offsets_advance_and_lag_decreases_somewhere() -> None:
    assert judge(history((10, 5), (20, 9), (30, 7)), lag=7) is S.OK


def test_an_empty_window_with_lag_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one commit"):
        evaluate([], 3, now=0.0, samples=2)


def test_the_window_records_commits_not_samples() -> None:
    w = CommitWindow(3)
    w.observe(10, 2, 0.0, owned=False)  # first sight: a commit
    w.observe(10, 4, 1.0, owned=False)  # no consumer, same offset: not a commit
    assert [c.at for c in w.commits] == [0.0]
    assert w.status(4, 1.0) is S.STOP
    w.observe(12, 4, 2.0, owned=False)  # the offset moved: a commit happened
    w.observe(12, 4, 3.0, owned=True)  # a live owner keeps committing
    w.observe(12, 4, 4.0, owned=True)
    assert [c.at for c in w.commits] == [2.0, 3.0, 4.0]  # bounded: the oldest fell out
    assert w.status(4, 4.0) is S.STALL
    assert w.samples == 5


def test_window_size_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        CommitWindow(1)


def test_a_worker_stopping_with_lag_goes_from_ok_to_stop() -> None:
    tracker = StatusTracker(size=4)
    key = ("g", "t", 0)
    statuses = [tracker.observe(key, 100 + t, 0, float(t), owned=True) for t in range(4)]
    assert statuses == [S.OK] * 4
    # The worker is gone; events keep coming: lag grows, the offset stays.
    later = [tracker.observe(key, 103, lag, 4.0 + i, owned=False) for i, lag in enumerate([1, 2])]
    assert later == [S.OK, S.OK]  # lag was 0 in the window and the span (3 s) not exceeded
    assert tracker.observe(key, 103, 3, 6.5, owned=False) is S.STOP
    assert tracker.observe(key, 110, 0, 7.0, owned=True) is S.OK  # back and caught up


def test_group_takes_its_worst_partition() -> None:
    assert group_status([S.OK, S.OK]) is GroupStatus.OK
    assert group_status([S.OK, S.UNKNOWN]) is GroupStatus.UNKNOWN
    assert group_status([S.OK, S.WARN, S.UNKNOWN]) is GroupStatus.WARN
    for error in (S.STOP, S.STALL, S.REWIND):
        assert group_status([S.OK, S.WARN, error]) is GroupStatus.ERR
    assert group_status([None, S.OK]) is GroupStatus.OK
    assert group_status([None, None]) is GroupStatus.NOTFOUND
    assert group_status([]) is GroupStatus.NOTFOUND
