"""How hard each objective pulls on the representation every objective shares, and the loss scales
that make the pull equal.

Every objective trains the same encoder and RSSM (through ``ObjectiveInputs.embed``, ``post`` and
the modules it calls), next to the core terms (reward, continue, KL). A loss's raw size is its own
unit (nats over 12,288 pixels for reconstruction, nats over the batch for InfoNCE, a cosine
distance for self_predictive), so one scale for all measures loss magnitude as much as the
objective. The rule used for the built-in defaults (``Objective.loss_scales``): at initialisation,
each objective's losses together put a gradient of the same norm on the encoder and RSSM as the
reconstruction objective's does, Dream to Control's own representation loss. ``calibrate`` measures
that on replayed batches of random-policy episodes of the run's task.

    python -m wmbench.diagnostics.scales --task dmc:cartpole-swingup --set ... > table.md
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
import pandas as pd
import torch

from wmbench.agents.module import DreamerModule, world_model_loss
from wmbench.configio import from_dict, with_overrides
from wmbench.data.replay import Replay
from wmbench.objectives import available
from wmbench.run_config import RunConfig, prepare
from wmbench.runtime.env_pool import EnvSteps, make_run_env
from wmbench.types import Batch

REFERENCE = "reconstruction"
"""The objective whose gradient norm the others are matched to."""


def random_batches(cfg: RunConfig, steps: int, count: int, seed: int) -> list[Batch]:
    """``count`` replayed batches (``cfg.train``'s B × T) of ``steps`` random-policy agent steps.

    Raises:
        ValueError: ``steps`` is shorter than one sequence.
    """
    env = make_run_env(cfg, seed)
    env.action_space.seed(seed)
    replay = Replay(steps + 1000, env.observation_space.shape, env.action_space.shape[0], seed=seed)
    rows = EnvSteps(env)
    for _ in range(steps):
        if not rows.in_episode:
            replay.add(*rows.reset())
        replay.add(*rows.step(env.action_space.sample()))
    env.close()
    t = cfg.train
    return [Batch.from_arrays(replay.sample(t.batch_size, t.seq_len)) for _ in range(count)]


def shared_norms(cfg: RunConfig, batches: list[Batch], seeds: list[int]) -> dict[str, float]:
    """Gradient norm of each loss term on the encoder and RSSM at initialisation, every objective
    loss at scale 1: the mean over ``seeds`` (initialisations) × ``batches``.

    Returns:
        Term name (``reward``, ``cont``, ``kl``, ``objective/<loss>``, and ``objective`` for all
        the objective's losses together) to the mean norm.
    """
    objective_cls, objective_cfg = prepare(cfg)
    unit = dataclasses.replace(
        cfg.agent.world_model,
        objective_scales=dict.fromkeys(objective_cls.loss_scales, 1.0),
    )
    agent = dataclasses.replace(cfg.agent, world_model=unit)
    found: dict[str, list[float]] = {}
    for seed in seeds:
        torch.manual_seed(seed)
        module = DreamerModule(
            agent,
            batches[0].image.shape[2:],
            batches[0].prev_action.shape[-1],
            objective_cls,
            objective_cfg,
        )
        for batch in batches:
            _, _, metrics = world_model_loss(module.world_model, batch, grad_norms=True)
            for key, value in metrics.items():
                if key.startswith("grad_norm/shared/"):
                    found.setdefault(key.removeprefix("grad_norm/shared/"), []).append(float(value))
    return {k: float(np.mean(v)) for k, v in found.items()}


def calibrate(
    cfg: RunConfig, objectives: list[str], batches: list[Batch], seeds: list[int]
) -> pd.DataFrame:
    """Scale of each objective that matches its shared gradient norm to ``REFERENCE``'s.

    Returns:
        One row per objective (``REFERENCE`` first): ``objective``, ``losses`` (its loss names),
        the norms at scale 1 of its losses together (``norm``) and of the core terms
        (``reward``, ``cont``, ``kl``), and ``scale`` = the reference's norm / ``norm`` (NaN for an
        objective without losses).
    """
    rows = []
    for name in dict.fromkeys([REFERENCE, *objectives]):
        norms = shared_norms(
            dataclasses.replace(cfg, objective=name, objective_config={}), batches, seeds
        )
        losses = [k.removeprefix("objective/") for k in norms if k.startswith("objective/")]
        rows.append(
            {
                "objective": name,
                "losses": ", ".join(losses),
                "norm": norms.get("objective", float("nan")),
                **{k: norms[k] for k in ("reward", "cont", "kl")},
            }
        )
    table = pd.DataFrame(rows)
    return table.assign(scale=table.norm.iloc[0] / table.norm)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="dmc:cartpole-swingup")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="RunConfig override (networks, action repeat, batch shape)",
    )
    parser.add_argument(
        "--steps", type=int, default=2000, help="random-policy agent steps recorded"
    )
    parser.add_argument(
        "--batches", type=int, default=4, help="replayed batches per initialisation"
    )
    parser.add_argument("--seeds", type=int, default=3, help="initialisations per objective")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = with_overrides(from_dict(RunConfig, {}), [f"env.task={args.task}", *args.set])
    batches = random_batches(cfg, args.steps, args.batches, seed=0)
    table = calibrate(
        cfg, [o for o in available() if o != REFERENCE], batches, list(range(args.seeds))
    )
    print(table.to_markdown(index=False, floatfmt=".4g"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
