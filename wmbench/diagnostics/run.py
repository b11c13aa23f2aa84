"""``wmbench diagnose RUN_DIR``: state probes and open-loop prediction on a run's checkpoint.

Steps: rebuild the run's module from ``checkpoints/last.ckpt``; record ``episodes`` episodes with
its policy (sampling its actor, as in training) in an env seeded apart from training and evaluation
(``seed + 2_000_000``); hold out the last ``test_episodes``; fit ridge state probes on the training
episodes' posterior features ``feat`` and ``deter`` — of the trained world model and of a randomly
initialised one of the same configuration (torch seed = the run's seed), the floor — and score R² on
the held-out ones; train the probe decoder on the trained model's detached features; evaluate
open-loop prediction on the held-out episodes.

Writes into ``RUN_DIR/diagnostics/``:

- ``results.json``: the settings, ``env_frames`` and ``updates`` of the checkpoint, ``state_names``,
  ``r2`` (per probe ``feat``, ``deter``, ``random_feat``, ``random_deter``: ``overall`` and
  ``per_dim``), ``alpha`` (the penalty each probe chose), ``horizon`` (``reward``, ``state``,
  ``image``, ``decoder_image``: lists of length n, or ``null``) and ``probe_decoder_loss`` (first
  and last training step);
- ``metrics.csv``: the same scalars as one row for the result store (``wmbench.report.store``):
  ``env_frames``, ``wall_time`` (the run's, from ``status.json``), ``diagnose/r2/<probe>`` and
  ``diagnose/open_loop/<quantity>@<h>`` for h = 1 … n;
- ``open_loop.png``: truth vs prediction strip of the first held-out window.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from wmbench.agents.module import DreamerModule
from wmbench.agents.world_model import WorldModel
from wmbench.configio import ConfigError
from wmbench.diagnostics import episodes as ep
from wmbench.diagnostics import open_loop
from wmbench.diagnostics.config import PROBES, DiagnoseConfig
from wmbench.diagnostics.probe import RidgeProbe, select_alpha
from wmbench.diagnostics.probe_decoder import train_probe_decoder
from wmbench.run_config import RunConfig, prepare
from wmbench.rundir import (
    BASELINES,
    CHECKPOINT,
    DIAGNOSTICS,
    METRICS,
    make_dir,
    read_config,
    read_status,
)
from wmbench.runtime.checkpoint import RunCheckpoint
from wmbench.runtime.stream import AgentPolicy, make_run_env

ENV_SEED_OFFSET = 2_000_000
"""Diagnostic episodes use env seed ``run seed + ENV_SEED_OFFSET`` (training uses the seed,
evaluation ``+ EVAL_ENV_SEED_OFFSET``)."""


@dataclass(frozen=True)
class Checkpoint:
    """What ``diagnose`` reads of a run's checkpoint.

    Attributes:
        state_dict: the ``DreamerModule``'s weights.
        updates: gradient updates made before it was written.
        env_frames: env frames collected then (from the checkpoint; ``status.json`` for run format
            1).
    """

    state_dict: dict[str, torch.Tensor]
    updates: int
    env_frames: int


def load_run(run_dir: str | Path) -> tuple[RunConfig, Checkpoint]:
    """The run's config and the weights of its checkpoint.

    Only the weights are read, so checkpoints of every run-directory format work (resuming needs
    ``RUN_FORMAT``, see ``wmbench.runtime.checkpoint``).

    Raises:
        ConfigError: ``run_dir`` has no ``config.yaml``, holds a baseline (no world
            model), has no checkpoint, or the checkpoint cannot be read (each names the fix).
    """
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if cfg.objective in BASELINES:
        raise ConfigError(
            f"{run_dir} is the {cfg.objective} baseline (a fixed policy): it has no world model to "
            "diagnose; give the directory of a trained run"
        )
    path = run_dir / CHECKPOINT
    if not path.exists():
        fix = f"finish the run first (`wmbench train --resume {run_dir}`)"
        if read_status(run_dir).get("status") == "done":
            fix = "train it again (its checkpoint is gone)"
        raise ConfigError(f"{run_dir} has no checkpoint ({CHECKPOINT}) to diagnose; {fix}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        stream = checkpoint.get("callbacks", {}).get(RunCheckpoint.__qualname__, {}).get("stream")
        frames = stream["counters"]["env_frames"] if stream else read_status(run_dir)["env_frames"]
        return cfg, Checkpoint(
            checkpoint["state_dict"], checkpoint.get("wmbench_updates", 0), frames
        )
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
        raise ConfigError(
            f"{path} cannot be read as a wmbench checkpoint ({type(err).__name__}: {err}); train "
            "the run again"
        ) from None


def build_module(cfg: RunConfig, action_dim: int) -> DreamerModule:
    """A freshly initialised module of the run's configuration, in eval mode (uses torch's global
    RNG)."""
    objective_cls, objective_cfg = prepare(cfg)
    image_shape = (3, cfg.env.image_size, cfg.env.image_size)
    return DreamerModule(cfg.agent, image_shape, action_dim, objective_cls, objective_cfg).eval()


def probe_r2(
    world_model: WorldModel,
    train: list[ep.Episode],
    test: list[ep.Episode],
    alphas: tuple[float, ...],
) -> tuple[dict[str, np.ndarray], dict[str, float], RidgeProbe, torch.Tensor]:
    """Held-out R² of ridge probes from ``feat`` and from ``deter`` to the physics state.

    Each probe's penalty is chosen from ``alphas`` by ``select_alpha`` over the training episodes.

    Returns:
        ``(r2, alpha, probe, train_feat)``: ``(per_dim [Z], overall)`` R² and the chosen penalty per
        feature set (``feat``, ``deter``); the ``feat`` probe; the training episodes' posterior
        features ``[N, F]`` (no gradient).
    """
    train_y, test_y = (
        np.concatenate([e.state for e in train]),
        np.concatenate([e.state for e in test]),
    )
    groups = np.concatenate([np.full(len(e), i) for i, e in enumerate(train)])
    train_x = dict(
        zip(("feat", "deter"), (x.numpy() for x in ep.features(world_model, train)), strict=True)
    )
    test_x = dict(
        zip(("feat", "deter"), (x.numpy() for x in ep.features(world_model, test)), strict=True)
    )
    r2, alpha, probes = {}, {}, {}
    for name in ("feat", "deter"):
        alpha[name], _ = select_alpha(train_x[name], train_y, groups, alphas)
        probes[name] = RidgeProbe.fit(train_x[name], train_y, alpha[name])
        r2[name] = probes[name].r2(test_x[name], test_y)
    return r2, alpha, probes["feat"], torch.as_tensor(train_x["feat"])


def diagnose(run_dir: str | Path, config: DiagnoseConfig = DiagnoseConfig()) -> dict[str, Any]:
    """Run the diagnostics on a run's checkpoint and write them into ``run_dir/diagnostics/``.

    Args:
        run_dir: a run directory with ``config.yaml`` and ``checkpoints/last.ckpt``.
        config: see ``DiagnoseConfig``.

    Returns:
        The content of ``results.json`` (see the module docstring).

    Raises:
        ConfigError: not a run directory, no checkpoint, or settings that cannot work (names the
            fix).
        RendererUnavailableError: no headless OpenGL backend for dm_control.
    """
    run_dir = Path(run_dir)
    cfg, checkpoint = load_run(run_dir)
    env = make_run_env(cfg, seed=cfg.seed + ENV_SEED_OFFSET)
    action_dim = env.action_space.shape[0]
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        floor = build_module(cfg, action_dim)
        module = build_module(cfg, action_dim)
        module.load_state_dict(checkpoint.state_dict)
        torch.manual_seed(config.seed)
        policy = AgentPolicy(module, action_dim)
        recorded = ep.collect(
            env,
            lambda obs, first: policy(obs, first, explore=True),
            config.episodes,
            config.max_steps,
            seed=cfg.seed + ENV_SEED_OFFSET + config.seed,
        )
        names = ep.state_names(env.reset()[1], ep.circular_qpos(env))
        env.close()
        train, test = ep.split(recorded, config.test_episodes)
        r2, alpha, probe, train_feat = probe_r2(module.world_model, train, test, config.alphas)
        floor_r2, floor_alpha, _, _ = probe_r2(floor.world_model, train, test, config.alphas)
        r2.update({f"random_{name}": value for name, value in floor_r2.items()})
        alpha.update({f"random_{name}": value for name, value in floor_alpha.items()})
        decoder, losses = train_probe_decoder(
            train_feat,
            torch.as_tensor(np.concatenate([e.image for e in train])),
            cfg.agent.world_model.cnn_depth,
            config.decoder_steps,
            seed=config.seed,
        )
        try:
            errors, strip, labels = open_loop.evaluate(
                module.world_model, test, config.context, config.horizon, probe, decoder
            )
        except ValueError as err:  # the env ended the held-out episodes before one window fits
            raise ConfigError(f"diagnose: {err}") from None
    frames = checkpoint.env_frames
    horizon = {
        "reward": errors.reward,
        "state": errors.state,
        "image": errors.image,
        "decoder_image": errors.decoder_image,
    }
    results = {
        "settings": asdict(config),
        "objective": cfg.objective,
        "task": cfg.env.task,
        "seed": cfg.seed,
        "env_frames": frames,
        "updates": checkpoint.updates,
        "state_names": names,
        "rows": {"train": sum(len(e) for e in train), "test": sum(len(e) for e in test)},
        "r2": {
            name: {"overall": _float(r2[name][1]), "per_dim": _floats(r2[name][0])}
            for name in PROBES
        },
        "alpha": alpha,
        "horizon": {
            name: None if value is None else _floats(value) for name, value in horizon.items()
        },
        "open_loop_windows": errors.windows,
        "probe_decoder_loss": {
            "first": losses[0] if losses else None,
            "last": losses[-1] if losses else None,
        },
    }
    title = f"{cfg.objective} · {cfg.env.task} · seed {cfg.seed} · {frames} env frames"
    write(run_dir, results, read_status(run_dir).get("wall_time", math.nan))
    open_loop.save_strip(
        strip, labels, config.context, run_dir / DIAGNOSTICS / "open_loop.png", title
    )
    return results


def write(run_dir: Path, results: dict[str, Any], wall_time: float) -> None:
    """Writes ``results.json`` and the store's ``metrics.csv`` row (see the module docstring)."""
    out = make_dir(run_dir / DIAGNOSTICS, "RUN_DIR")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    row = {"env_frames": results["env_frames"], "wall_time": wall_time}
    row.update(
        {f"diagnose/r2/{name}": _nan(value["overall"]) for name, value in results["r2"].items()}
    )
    for name, values in results["horizon"].items():
        for h, value in enumerate(values or [], 1):
            row[f"diagnose/open_loop/{name}@{h}"] = _nan(value)
    pd.DataFrame([row]).to_csv(out / METRICS, index=False)


def _float(value: float) -> float | None:
    """JSON-safe number: NaN becomes ``None``."""
    return float(value) if math.isfinite(value) else None


def _nan(value: float | None) -> float:
    """``None`` (a JSON NaN) back to NaN."""
    return math.nan if value is None else value


def _floats(values: np.ndarray) -> list[float | None]:
    """JSON-safe list: NaN becomes ``None``."""
    return [_float(v) for v in np.asarray(values, np.float64)]
