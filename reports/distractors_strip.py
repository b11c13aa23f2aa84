"""Renders reports/distractors-strip.png: 8 consecutive observations of dmc:walker-walk, standard
(top row) and with the distracting video background (bottom row), same seed and same random actions.

Run from the repository root: ``python reports/distractors_strip.py`` (about 10 s on one CPU core).
"""

from pathlib import Path

import numpy as np
from matplotlib.image import imsave

from wmbench.envs import make_env

FRAMES, SCALE, SKIP = 8, 3, 10


def rollout(task: str) -> list[np.ndarray]:
    """Observations 10..17 of one episode under seeded uniform random actions, each uint8 (64, 64, 3)."""
    env = make_env(task, seed=0, action_repeat=2)
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    frames = []
    for i in range(SKIP + FRAMES):
        if i >= SKIP:
            frames.append(obs.transpose(1, 2, 0))
        obs, *_ = env.step(env.action_space.sample())
    env.close()
    return frames


rows = [np.concatenate(rollout(task), 1) for task in ("dmc:walker-walk", "dmc:walker-walk?background=video")]
strip = np.concatenate(rows, 0).repeat(SCALE, 0).repeat(SCALE, 1)
imsave(Path(__file__).with_name("distractors-strip.png"), strip)
