"""Settings of ``wmbench diagnose`` and the names of its probes (a module of its own, without torch,
so the command line and the report read them cheaply)."""

from __future__ import annotations

from dataclasses import dataclass

from wmbench.configio import ConfigError

PROBES = ("feat", "deter", "random_feat", "random_deter")
"""State probes of ``diagnose``, by the features they read: trained or randomly initialised world
model."""


@dataclass(frozen=True)
class DiagnoseConfig:
    """Settings of ``diagnose``.

    With the defaults a smoke-size run (``suites/smoke.yaml``, cartpole-balance) took 23 s on a busy
    2-core machine with one torch thread (``OMP_NUM_THREADS=1``), but about 2 min with two threads
    competing with another job there; rendering the episodes and training the probe decoder take
    most of it.

    Attributes:
        episodes: episodes recorded with the agent's policy.
        test_episodes: of those, held out for R² and open-loop prediction (the last ones).
        max_steps: agent steps per episode at most.
        context: k observed rows per open-loop window.
        horizon: n imagined rows per open-loop window.
        decoder_steps: Adam steps of the probe decoder.
        alphas: candidate ridge penalties on standardised features; each probe takes the one with
            the best R² in leave-one-episode-out cross-validation on the training episodes.
        seed: seed of the policy's action sampling and the probe decoder; also shifts the episodes'
            reset seeds.
    """

    episodes: int = 5
    test_episodes: int = 2
    max_steps: int = 80
    context: int = 5
    horizon: int = 15
    decoder_steps: int = 150
    alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("episodes", "test_episodes", "max_steps", "context", "horizon"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"diagnose: {name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.episodes - self.test_episodes < 2:
            raise ConfigError(
                f"diagnose: episodes={self.episodes} with test-episodes={self.test_episodes} "
                "leaves fewer than 2 training episodes (the ridge penalty is cross-validated over "
                f"them); raise --episodes to {self.test_episodes + 2}"
            )
        if self.context + self.horizon > self.max_steps + 1:
            raise ConfigError(
                f"diagnose: context + horizon = {self.context + self.horizon} rows exceed an "
                f"episode of max-steps={self.max_steps} (+1 reset row); lower --context/--horizon "
                "or raise --max-steps"
            )
        if self.decoder_steps < 0 or not self.alphas or min(self.alphas) < 0:
            raise ConfigError(
                "diagnose: decoder-steps must be >= 0 and --alpha must list penalties >= 0"
            )
