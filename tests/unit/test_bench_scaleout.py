"""The --processes N bench row: when the group counts as formed, and how its rate is timed."""

from __future__ import annotations

from bench.scaleout import backlog_rate, group_assignment

_LINE = "2026-12-01 22:19:47,081 INFO stream_infer.worker: {} {}"


def _log(*events: tuple[str, list[int]]) -> str:
    return "\n".join(_LINE.format(kind, parts) for kind, parts in events)


def test_a_member_alone_with_every_partition_is_not_a_group_of_two() -> None:
    log = _log(("assigned", list(range(6))))
    assert group_assignment(log, 2, 6) is None
    assert group_assignment(log, 1, 6) == [list(range(6))]


def test_the_group_forms_once_the_newest_assignments_split_every_partition() -> None:
    # Eager rebalance: the first member takes all, gives all back, then each gets half.
    log = _log(("assigned", list(range(6))), ("revoked", list(range(6))), ("assigned", [3, 4, 5]))
    assert group_assignment(log, 2, 6) is None  # overlaps the first member's old assignment
    log += "\n" + _LINE.format("assigned", [0, 1, 2])
    assert group_assignment(log, 2, 6) == [[0, 1, 2], [3, 4, 5]]


def test_an_empty_or_partial_assignment_is_not_formed() -> None:
    assert group_assignment(_log(("assigned", []), ("assigned", list(range(6)))), 2, 6) is None
    assert group_assignment(_log(("assigned", [0, 1]), ("assigned", [2, 3])), 2, 6) is None


def test_rate_counts_scores_after_the_preload_or_falls_back_to_all_scores() -> None:
    # 3 scores after the preload ended at t=1000 ms, the last at 2000 ms: 3 per second.
    assert backlog_rate([900, 1500, 1800, 2000], 1000.0) == (3.0, 1.0, "preload end")
    # The workers kept up: every score came before the preload ended.
    assert backlog_rate([0, 250, 500], 1000.0) == (6.0, 0.5, "first score")
