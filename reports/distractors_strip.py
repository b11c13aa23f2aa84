"""Renders reports/distractors-strip.png: 8 consecutive observations of dmc:walker-walk (action
repeat 2) and of dmc:cartpole-balance (action repeat 8, the task of suites/dmc-distractors-cpu.yaml),
standard and with the distracting video background, under seeded uniform random actions.
Rows, top to bottom: walker standard, walker video (episode seed 0), cartpole standard, then
cartpole video for episode seeds 0, 1 and 11, which draw its three background clips (acrobot,
swimmer, humanoid: cartpole's sources, see wmbench/envs/backgrounds.py).

Run from the repository root: ``python reports/distractors_strip.py`` (about 15 s on one CPU core).
"""

from pathlib import Path

import numpy as np
from matplotlib.image import imsave

from wmbench.envs import make_env

FRAMES, SCALE = 8, 3


def rollout(task: str, action_repeat: int, skip: int, seed: int = 0) -> list[np.ndarray]:
    """Observations skip..skip+7 of one episode under seeded uniform random actions, each uint8 (64, 64, 3)."""
    env = make_env(task, seed=seed, action_repeat=action_repeat)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(0)
    frames = []
    for i in range(skip + FRAMES):
        if i >= skip:
            frames.append(obs.transpose(1, 2, 0))
        obs, *_ = env.step(env.action_space.sample())
    env.close()
    return frames


VIDEO = "?background=video"
rows = [
    np.concatenate(rollout(f"dmc:{task}", repeat, skip, seed), 1)
    for task, repeat, skip, seed in (
        ("walker-walk", 2, 10, 0),
        ("walker-walk" + VIDEO, 2, 10, 0),
        ("cartpole-balance", 8, 0, 0),
        ("cartpole-balance" + VIDEO, 8, 0, 0),
        ("cartpole-balance" + VIDEO, 8, 0, 1),
        ("cartpole-balance" + VIDEO, 8, 0, 11),
    )
]
strip = np.concatenate(rows, 0).repeat(SCALE, 0).repeat(SCALE, 1)
imsave(Path(__file__).with_name("distractors-strip.png"), strip)
