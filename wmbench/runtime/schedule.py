"""The train ratio as a schedule: how many updates may have started after how many collected steps.

    train_ratio = replayed agent steps / collected agent steps   (each update replays B·T steps)

The first ``learning_starts`` env frames are collected with uniform random actions (the prefill),
then ``agent.pretrain_updates`` updates are due at once (Dream to Control trains on its prefill
before it collects again), then one update every ``B·T / train_ratio`` collected agent steps. One
``RatioSchedule`` serves every place that needs this: sync mode (``wmbench.runtime.sync``, no slack:
an update starts as soon as it is due), async mode (``wmbench.runtime.async_learner``, each side may
run ``slack`` ahead), the run-config check that the prefill fills a sequence, and the dry run's
update count (``wmbench.suite.plan``). Steps are agent steps (env frames / action repeat, rounded
up); a run's schedule is ``wmbench.run_config.RunConfig.ratio_schedule``. No torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ASYNC_SLACK = 0.05
"""How far (relative) either side of async mode may run ahead of the train ratio."""


@dataclass(frozen=True)
class RatioSchedule:
    """The train ratio as bounds on the updates started and on the steps collected.

    Attributes:
        prefill_steps: steps collected with random actions before the first update.
        total_steps: steps of the whole budget.
        steps_per_update: ``B·T / train_ratio``.
        slack: relative lead either side may take (0 in sync mode; ``ASYNC_SLACK`` in async mode).
        pretrain_updates: updates due as soon as the prefill is collected.
    """

    prefill_steps: int
    total_steps: int
    steps_per_update: float
    slack: float = 0.0
    pretrain_updates: int = 0

    @property
    def updates(self) -> int:
        """Updates of the budget: ``pretrain_updates + floor((total_steps - prefill_steps) /
        steps_per_update)``."""
        return self.updates_allowed(self.total_steps)

    def updates_allowed(self, steps: int) -> int:
        """Most updates that may have started once ``steps`` steps are collected.

        None before the prefill is complete; then the pretraining updates plus at most
        ``(1 + slack)`` times the updates due, never more than the budget's ``updates``; with no
        slack, exactly the updates due.
        """
        if steps < self.prefill_steps:
            return 0
        due = (steps - self.prefill_steps) / self.steps_per_update
        final = (self.total_steps - self.prefill_steps) / self.steps_per_update
        return self.pretrain_updates + math.floor(min(due * (1 + self.slack), final) + 1e-9)

    def steps_allowed(self, updates: int) -> int:
        """Most steps that may be collected (all actors together) while ``updates`` updates have
        started.

        The prefill until the pretraining updates have started; then ``(1 + slack)`` times the
        steps the started updates are due for, but at least what the next update needs (so neither
        side can block the other).
        """
        if updates < self.pretrain_updates:
            return min(self.total_steps, self.prefill_steps)
        updates -= self.pretrain_updates
        spu = self.steps_per_update
        lead = math.ceil(
            max(updates * spu * (1 + self.slack), (updates + 1) * spu / (1 + self.slack)) - 1e-9
        )
        return min(self.total_steps, self.prefill_steps + lead)

    def ratio(self, updates: int, steps: int) -> float:
        """Realised train ratio over the steps collected after the prefill, relative to the target
        (1 = on it); pretraining updates do not count."""
        return (
            max(0, updates - self.pretrain_updates)
            * self.steps_per_update
            / max(1, steps - self.prefill_steps)
        )
