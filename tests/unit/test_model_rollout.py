"""The rollback policy: N consecutive breaching windows fire, a healthy one resets."""

from __future__ import annotations

from stream_infer.config import RolloutSettings
from stream_infer.model.drift import WindowResult
from stream_infer.model.rollout import RolloutPolicy, decide

SETTINGS = RolloutSettings(
    psi_max=0.25, error_rate_max=0.01, consecutive_windows=3, min_window_scores=200
)


def window(
    psi: float | None = 0.02, n: int = 2000, calls: int = 100, errors: int = 0
) -> WindowResult:
    return WindowResult(
        version=7,
        psi=psi,
        n=n,
        events=n + errors * 20,
        calls=calls,
        errors=errors,
        duration_s=10.0,
        closed_by="count",
    )


def test_three_drifting_windows_roll_back_with_a_readable_reason() -> None:
    policy = RolloutPolicy(SETTINGS)
    first = policy.judge(window(0.38))
    second = policy.judge(window(0.45))
    assert not first.rollback and not second.rollback
    assert second.psi_streak == 2
    assert "breach 2 of 3" in second.reason
    third = policy.judge(window(0.41))
    assert third.rollback
    assert third.reason == "PSI 0.41 > 0.25 for 3 consecutive windows (0.41, 0.45, 0.38)"


def test_a_healthy_window_resets_the_count() -> None:
    sequence = [window(0.4), window(0.4), window(0.1), window(0.4), window(0.4)]
    decision = decide(sequence, SETTINGS)
    assert not decision.rollback
    assert decision.psi_streak == 2


def test_exactly_at_the_limit_is_not_a_breach() -> None:
    assert not decide([window(0.25)] * 5, SETTINGS).rollback
    assert not decide([window(errors=1, calls=100)] * 5, SETTINGS).rollback  # 1 % is allowed


def test_tiny_windows_neither_count_nor_reset() -> None:
    tiny = window(0.9, n=50, calls=2)
    assert not decide([window(0.4), tiny, window(0.4)], SETTINGS).rollback
    decision = decide([window(0.4), tiny, window(0.4), tiny, window(0.4)], SETTINGS)
    assert decision.rollback
    assert decide([tiny] * 10, SETTINGS).reason.endswith("not judged")


def test_error_rate_breaches_roll_back() -> None:
    decision = decide([window(errors=3, calls=100)] * 3, SETTINGS)
    assert decision.rollback
    assert decision.reason == (
        "error rate 3.0% > 1.0% for 3 consecutive windows (failed calls 3/100, 3/100, 3/100)"
    )


def test_a_window_of_only_failed_calls_is_judged_on_errors() -> None:
    failed = WindowResult(7, None, 0, 1000, 10, 10, 5.0, "time")
    decision = decide([failed] * 3, SETTINGS)
    assert decision.rollback
    assert decision.reason.startswith("error rate 100.0% > 1.0% for 3 consecutive windows")


def test_each_check_keeps_its_own_streak() -> None:
    drift, errors = window(0.5), window(0.05, errors=5)
    assert not decide([drift, errors, drift, errors, drift, errors], SETTINGS).rollback
    both = window(0.5, errors=5)
    decision = decide([both] * 3, SETTINGS)
    assert decision.rollback
    assert decision.reason.startswith("PSI 0.50 > 0.25 for 3 consecutive windows")
    assert "; error rate 5.0% > 1.0% for 3 consecutive windows" in decision.reason


def test_windows_without_psi_do_not_reset_the_drift_streak() -> None:
    no_psi = window(None)
    assert decide([window(0.4), window(0.4), no_psi, window(0.4)], SETTINGS).rollback


def test_rollback_stands_until_reset() -> None:
    policy = RolloutPolicy(SETTINGS)
    for _ in range(3):
        decision = policy.judge(window(0.6))
    assert decision.rollback
    assert policy.judge(window(0.01)) == decision
    policy.reset()
    after = policy.judge(window(0.01))
    assert not after.rollback and after.reason == "healthy window"


def test_disabled_never_rolls_back() -> None:
    off = SETTINGS.model_copy(update={"enabled": False})
    decision = decide([window(0.9, errors=50)] * 10, off)
    assert not decision.rollback
    assert "disabled" in decision.reason


def test_consecutive_windows_of_one_fire_at_once() -> None:
    one = SETTINGS.model_copy(update={"consecutive_windows": 1})
    assert decide([window(0.3)], one).reason == "PSI 0.30 > 0.25 in 1 window (0.30)"
    assert decide([], one).reason == "no window judged yet"
