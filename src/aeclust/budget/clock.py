"""How much of a run's budget is left."""

from __future__ import annotations

import time

from aeclust.runtime.progress import format_duration


class BudgetClock:
    """How much of a run's budget is left, for its progress lines; ``spent_before`` counts earlier sessions."""

    def __init__(self, budget_seconds: float, started: float, spent_before: float = 0.0) -> None:
        self.budget_seconds, self.started, self.spent_before = budget_seconds, started, spent_before

    def spent(self) -> float:
        return self.spent_before + time.perf_counter() - self.started

    def describe(self) -> str:
        left = self.budget_seconds - self.spent()
        budget = format_duration(self.budget_seconds)
        if left < 0:
            return f"budget {budget}: {format_duration(-left)} over"
        return f"budget {budget}: {format_duration(left)} left"
