"""The canary's rollback policy: pure judgement over the challenger's closed windows.

Like an Argo Rollouts analysis with a consecutive-failure limit, each check keeps its own
count of breaching windows in a row, and a window healthy on that check resets it:

- drift: the window's PSI against the challenger's reference exceeds ``rollout.psi_max``;
- errors: its failed inference calls / calls exceed ``rollout.error_rate_max``.

``rollout.consecutive_windows`` breaches in a row of either check decide "rollback", with a
reason a human can act on ("PSI 0.41 > 0.25 for 3 consecutive windows (0.41, 0.38, 0.45)",
latest first). A window of fewer than ``rollout.min_window_scores`` events is not judged: it
neither counts nor resets; the PSI is judged only on windows that scored that many. Once
decided, a rollback stands until :meth:`RolloutPolicy.reset`. No I/O, no clock: the caller
feeds :class:`~stream_infer.model.drift.WindowResult` values and acts on the decision.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from stream_infer.config import RolloutSettings
from stream_infer.model.drift import WindowResult

Action = Literal["continue", "rollback"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a window, and why (``reason`` is written for the operator)."""

    action: Action
    reason: str
    psi_streak: int = 0
    error_streak: int = 0

    @property
    def rollback(self) -> bool:
        return self.action == "rollback"


class RolloutPolicy:
    """Folds the challenger's windows into a decision (see the module docstring).

    Feed it only the challenger's windows, in the order they closed. Not thread-safe.
    """

    def __init__(self, settings: RolloutSettings) -> None:
        self._s = settings
        self._psi: list[float] = []
        self._errors: list[WindowResult] = []
        self._decided: Decision | None = None

    def reset(self) -> None:
        """Forget the streaks and any rollback decided (a new challenger starts)."""
        self._psi.clear()
        self._errors.clear()
        self._decided = None

    def judge(self, window: WindowResult) -> Decision:
        """The decision after ``window`` closed."""
        s = self._s
        if not s.enabled:
            return Decision("continue", "rollout checks are disabled")
        if self._decided is not None:
            return self._decided
        if window.events < s.min_window_scores:
            return self._continue(
                f"window of {window.events} events < {s.min_window_scores}: not judged"
            )
        notes: list[str] = []
        n = s.consecutive_windows
        if window.psi is not None and window.n >= s.min_window_scores:
            if window.psi > s.psi_max:
                self._psi.append(window.psi)
                notes.append(
                    f"PSI {window.psi:.2f} > {s.psi_max:.2f} "
                    f"(breach {len(self._psi)} of {n} in a row)"
                )
            else:
                self._psi.clear()
        if window.error_rate > s.error_rate_max:
            self._errors.append(window)
            notes.append(
                f"error rate {window.error_rate:.1%} > {s.error_rate_max:.1%} "
                f"(breach {len(self._errors)} of {n} in a row)"
            )
        else:
            self._errors.clear()
        reasons = self._breached()
        if reasons:
            self._decided = Decision("rollback", "; ".join(reasons), *self._streaks())
            return self._decided
        if not notes:
            return self._continue("healthy window")
        return self._continue("; ".join(notes))

    def _streaks(self) -> tuple[int, int]:
        return len(self._psi), len(self._errors)

    def _continue(self, reason: str) -> Decision:
        return Decision("continue", reason, *self._streaks())

    def _breached(self) -> list[str]:
        n = self._s.consecutive_windows
        span = f"for {n} consecutive windows" if n > 1 else "in 1 window"
        reasons: list[str] = []
        if len(self._psi) >= n:
            recent = self._psi[::-1][:n]
            values = ", ".join(f"{v:.2f}" for v in recent)
            reasons.append(f"PSI {recent[0]:.2f} > {self._s.psi_max:.2f} {span} ({values})")
        if len(self._errors) >= n:
            recent_windows = self._errors[::-1][:n]
            calls = ", ".join(f"{w.errors}/{w.calls}" for w in recent_windows)
            reasons.append(
                f"error rate {recent_windows[0].error_rate:.1%} > {self._s.error_rate_max:.1%} "
                f"{span} (failed calls {calls})"
            )
        return reasons


def decide(windows: Iterable[WindowResult], settings: RolloutSettings) -> Decision:
    """The decision after the last of ``windows`` (a rollback, once decided, stands)."""
    policy = RolloutPolicy(settings)
    decision = Decision("continue", "no window judged yet")
    for window in windows:
        decision = policy.judge(window)
    return decision
