"""Final evaluation of the SheepRL DreamerV3 peer run: its deterministic policy over seeded
episodes.

    python evaluate_sheeprl.py CHECKPOINT [--episodes 10] [--out returns.csv]

Runs in SheepRL's environment (``run.sh`` says which); the wmbench runs' final evaluation is the
same kind of measurement (the mode of the actor, 10 episodes). Episode k resets the env with seed
k, as SheepRL's own end-of-training test does with seed 0, and seeds torch with k: SheepRL's
player samples its posterior latent state, so without it an episode's return changes from one
process to the next. Writes one row per episode
(``episode, seed, return``) and prints the mean.
"""

from __future__ import annotations

import argparse
import csv

import torch
from lightning import Fabric
from omegaconf import OmegaConf
from sheeprl.algos.dreamer_v3.agent import build_agent
from sheeprl.algos.dreamer_v3.utils import prepare_obs
from sheeprl.utils import fs
from sheeprl.utils.env import make_env
from sheeprl.utils.utils import dotdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", default="returns.csv")
    args = parser.parse_args()
    run_cfg = fs.load_yaml(fs.run_config(args.checkpoint))
    cfg = dotdict(OmegaConf.to_container(run_cfg, resolve=True))
    cfg.env.capture_video = False
    fabric = Fabric(accelerator="cpu", devices=1)
    state = fs.load_checkpoint(fabric, args.checkpoint, weights_only=False)
    env = make_env(cfg, 0, 0, None, "test")()
    actions_dim = tuple(env.action_space.shape)
    *_, player = build_agent(fabric, actions_dim, True, cfg, env.observation_space,
                             state["world_model"], state["actor"])
    rows = []
    for episode in range(args.episodes):
        torch.manual_seed(episode)  # the player samples its posterior latent state
        obs, done, total = env.reset(seed=episode)[0], False, 0.0
        player.num_envs = 1
        player.init_states()
        while not done:
            with torch.no_grad():
                torch_obs = prepare_obs(fabric, obs, cnn_keys=cfg.algo.cnn_keys.encoder)
                action = torch.stack(player.get_actions(torch_obs, greedy=True), -1).numpy()
            obs, reward, terminated, truncated, _ = env.step(action.reshape(env.action_space.shape))
            done = terminated or truncated
            total += reward
        rows.append({"episode": episode, "seed": episode, "return": total})
        print(f"episode {episode}: return {total:.1f}", flush=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["episode", "seed", "return"])
        writer.writeheader()
        writer.writerows(rows)
    mean = sum(row["return"] for row in rows) / len(rows)
    print(f"mean return over {len(rows)} episodes: {mean:.1f}")


if __name__ == "__main__":
    main()
