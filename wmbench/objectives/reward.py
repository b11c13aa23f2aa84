"""Reward prediction only (the "Reward" baseline of Hafner et al., *Dream to Control*, ICLR 2020,
Sec. 6).

The world model learns its representation from the core terms alone: reward prediction, continue
prediction and the KL between posterior and prior. This objective adds no loss and no parameters.
"""

from __future__ import annotations

from wmbench.objectives import Objective, ObjectiveInputs, ObjectiveOutput


class RewardObjective(Objective):
    """Adds nothing to the core world-model loss (no observation term)."""

    name = "reward"

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        return ObjectiveOutput(losses={})
