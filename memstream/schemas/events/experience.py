"""Learning agents' steps, the teacher signal distillation fits."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import (
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from memstream.schemas.events.envelope import _INT64, Event, _Model

MAX_OBSERVATION_DIM = 1024


MAX_ACTIONS = 256


DISTRIBUTION_TOLERANCE = 1e-3
"""How far an experience's action distribution may sum from 1 (float32 rounding)."""


class ExperiencePayload(_Model):
    """One step of a learning agent: what it saw, what it did, what it got, and the action
    distribution its policy gave (the teacher signal the distillation processor fits)."""

    episode: int = Field(ge=0, lt=_INT64, description="the agent's episode number")
    step: int = Field(ge=0, lt=2**31, description="the step within the episode, from 0")
    observation: list[float] = Field(min_length=1, max_length=MAX_OBSERVATION_DIM)
    action: int = Field(ge=0, description="index of the action taken")
    reward: float
    done: bool = Field(default=False, description="the episode ended with this step")
    distribution: list[float] = Field(
        min_length=2,
        max_length=MAX_ACTIONS,
        description="the policy's probability of each action; sums to 1",
    )

    @model_validator(mode="after")
    def _a_distribution(self) -> ExperiencePayload:
        if any(p < 0.0 or p > 1.0 for p in self.distribution):
            raise PydanticCustomError(
                "distribution_range", "distribution holds a probability outside [0, 1]"
            )
        total = math.fsum(self.distribution)
        if abs(total - 1.0) > DISTRIBUTION_TOLERANCE:
            raise PydanticCustomError(
                "distribution_sum",
                "distribution sums to {total}, not 1 (tolerance {tolerance})",
                {"total": round(total, 6), "tolerance": DISTRIBUTION_TOLERANCE},
            )
        if self.action >= len(self.distribution):
            raise PydanticCustomError(
                "action_range",
                "action {action} is not one of the distribution's {n} actions",
                {"action": self.action, "n": len(self.distribution)},
            )
        return self


class Experience(Event):
    kind: Literal["experience"] = "experience"
    payload: ExperiencePayload
