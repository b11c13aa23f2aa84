"""DreamerModule update order and run-level determinism."""

from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import IMAGE_SHAPE, PRESETS, A, random_batch, tiny_agent_config, tiny_run_dict
from wmbench import objectives
from wmbench.agents.module import DreamerModule, world_model_loss
from wmbench.configio import from_dict
from wmbench.envs import make_env
from wmbench.envs.toy import EPISODE_STEPS
from wmbench.objectives.registry import BUILTIN
from wmbench.run_config import RunConfig
from wmbench.runtime.stream import AgentPolicy, evaluate
from wmbench.runtime.train import train


def fit(module: DreamerModule, batches: list, callback: L.Callback) -> None:
    """One epoch of ``module`` over ``batches`` on a bare CPU Trainer with ``callback``."""
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters, but not an objective's EMA target (``objective.target``), which moves after
    the world model's step (``test_ema_targets_move_once_per_update_after_the_world_model_step``).
    """
    return {
        n: p.detach().clone()
        for n, p in module.named_parameters()
        if not n.startswith("objective.target.")
    }


def snapshot_all(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters including frozen ones (the slow critic has requires_grad=False)."""
    return {n: p.detach().clone() for n, p in module.state_dict(keep_vars=True).items()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [n for n in before if not torch.equal(before[n], after[n])]


class Recorder(L.Callback):
    def __init__(self) -> None:
        self.end: list[dict[str, dict[str, torch.Tensor]]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end.append(
            {
                "wm": snapshot(pl_module.world_model),
                "actor": snapshot(pl_module.actor_critic.actor),
                "critic": snapshot(pl_module.actor_critic.critic),
                "slow": snapshot_all(pl_module.actor_critic.slow_critic),
            }
        )


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("objective", sorted(BUILTIN))
def test_actor_and_critic_updates_leave_world_model_untouched(objective, preset):
    torch.manual_seed(0)
    cls = objectives.get(objective)
    config = tiny_agent_config(preset, actor_critic={"actor_lr": 1e-3, "critic_lr": 1e-3})
    module = DreamerModule(config, IMAGE_SHAPE, A, cls, cls.Config())
    initial = {
        "wm": snapshot(module.world_model),
        "actor": snapshot(module.actor_critic.actor),
        "critic": snapshot(module.actor_critic.critic),
        "slow": snapshot_all(module.actor_critic.slow_critic),
    }
    after_wm_step: list[dict[str, dict[str, torch.Tensor]]] = []
    step_params: list[set[int]] = []
    original_step = module._step

    def recording_step(opt, *args, **kwargs):
        norm = original_step(opt, *args, **kwargs)
        step_params.append({id(p) for group in opt.param_groups for p in group["params"]})
        if len(step_params) % 3 == 1:  # the first optimizer step of an update is the world model's
            after_wm_step.append(
                {
                    "wm": snapshot(module.world_model),
                    "actor": snapshot(module.actor_critic.actor),
                    "critic": snapshot(module.actor_critic.critic),
                    "slow": snapshot_all(module.actor_critic.slow_critic),
                }
            )
        return norm

    module._step = recording_step
    recorder = Recorder()
    fit(module, [random_batch(seed=i) for i in range(2)], recorder)

    assert module.updates == 2
    assert len(step_params) == 6 and len(after_wm_step) == 2 and len(recorder.end) == 2
    wm_ids = {id(p) for p in module.world_model.parameters()}
    assert step_params[0] == wm_ids
    assert step_params[1] == {id(p) for p in module.actor_critic.actor.parameters()}
    assert step_params[2] == {id(p) for p in module.actor_critic.critic.parameters()}

    previous = initial
    for mid, end in zip(after_wm_step, recorder.end, strict=True):
        # the world-model step did update the world model (and only it)
        assert changed(previous["wm"], mid["wm"])
        assert not changed(previous["actor"], mid["actor"])
        assert not changed(previous["critic"], mid["critic"])
        # actor + critic + slow-critic updates: world model bitwise unchanged
        assert changed(mid["wm"], end["wm"]) == []
        assert changed(mid["actor"], end["actor"])
        assert changed(mid["critic"], end["critic"])
        assert changed(mid["slow"], end["slow"])
        # the slow critic moved by the EMA fraction toward the updated critic
        tau = config.actor_critic.slow_critic_fraction
        for name, slow in end["slow"].items():
            torch.testing.assert_close(
                slow, mid["slow"][name] + tau * (end["critic"][name] - mid["slow"][name])
            )
        previous = end


@pytest.mark.parametrize("objective", ["prototypes", "self_predictive"])
def test_ema_targets_move_once_per_update_after_the_world_model_step(objective):
    torch.manual_seed(0)
    cls = objectives.get(objective)
    config = cls.Config(target_fraction=0.5)
    module = DreamerModule(tiny_agent_config(), IMAGE_SHAPE, A, cls, config)
    target, encoder = module.world_model.objective.target, module.world_model.encoder
    expected = [p.detach().clone() for p in encoder.parameters()]  # built: the target is a copy
    assert all(map(torch.equal, target["encoder"].parameters(), expected))

    class ExtraForwards(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            # this update moved the target once, halfway toward the encoder after its step
            online = [p.detach() for p in encoder.parameters()]
            expected[:] = [e + 0.5 * (o - e) for e, o in zip(expected, online, strict=True)]
            for _ in range(2):  # more forwards in training mode (as diagnostics do) move nothing
                world_model_loss(pl_module.world_model, batch, grad_norms=True)

    fit(module, [random_batch(seed=i) for i in range(3)], ExtraForwards())
    assert module.updates == 3 and int(target.updates) == 1 + 3
    for got, want in zip(target["encoder"].parameters(), expected, strict=True):
        torch.testing.assert_close(got, want)
    assert not torch.equal(expected[0], next(encoder.parameters()))  # still behind the encoder


def _run_metrics(tmp_path, name: str, seed: int, preset: str) -> pd.DataFrame:
    cfg = from_dict(RunConfig, tiny_run_dict(objective="reconstruction", seed=seed, preset=preset))
    summary = train(cfg, tmp_path / name)
    assert summary["updates"] == 2
    df = pd.read_csv(tmp_path / name / "metrics.csv")
    return df.drop(columns=["wall_time"])


@pytest.mark.parametrize("preset", PRESETS)
def test_same_seed_same_metrics_different_seed_different(tmp_path, preset):
    a = _run_metrics(tmp_path, "a", seed=0, preset=preset)
    b = _run_metrics(tmp_path, "b", seed=0, preset=preset)
    c = _run_metrics(tmp_path, "c", seed=1, preset=preset)
    train_cols = [col for col in a.columns if col.startswith("train/loss/")]
    assert "train/loss/world_model" in train_cols and "train/loss/objective/image" in train_cols
    assert a[train_cols].notna().any().all()
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert list(a.columns) == list(c.columns)
    assert not a["train/loss/world_model"].dropna().reset_index(drop=True).equals(
        c["train/loss/world_model"].dropna().reset_index(drop=True)
    )


def test_deterministic_evaluation_is_repeatable_and_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    cls = objectives.get("reward")
    module = DreamerModule(tiny_agent_config(), IMAGE_SHAPE, A, cls, cls.Config())
    env = make_env("toy:reach", action_repeat=1)
    policy = AgentPolicy(module, A)

    def actions() -> list[np.ndarray]:
        taken = []

        def act(obs, first):
            taken.append(policy(obs, first, explore=False))
            return taken[-1]

        evaluate(env, act, episodes=1, seed=7)
        return taken

    state = torch.get_rng_state()
    first = actions()
    assert torch.equal(torch.get_rng_state(), state)  # training's random stream is not consumed
    torch.manual_seed(123)  # another global state: the same evaluation
    again = actions()
    assert len(first) == len(again) == EPISODE_STEPS
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_the_first_and_final_evaluations_and_the_baselines_share_their_episodes(
    tmp_path, monkeypatch
):
    """0 env frames and the end: final_eval_episodes from eval_episode_seed(seed, 0); between them
    eval_episodes of their own; the zero and random baselines on the first/final episodes."""
    from wmbench.runtime import stream
    from wmbench.runtime import train as train_module
    from wmbench.runtime.train import baseline

    calls = []
    original = stream.evaluate

    def recording(env, act, episodes, seed):
        calls.append((episodes, seed))
        return original(env, act, episodes, seed)

    monkeypatch.setattr(stream, "evaluate", recording)
    monkeypatch.setattr(train_module, "evaluate", recording)
    data = tiny_run_dict(seed=3)
    data["train"].update(env_frames=30, learning_starts=8, train_ratio=4, eval_every=10,
                         eval_episodes=1, final_eval_episodes=3)
    cfg = from_dict(RunConfig, data)
    train(cfg, tmp_path / "run")
    first = stream.eval_episode_seed(3, 0)
    assert calls == [(3, first), (1, stream.eval_episode_seed(3, 10)),
                     (1, stream.eval_episode_seed(3, 20)), (3, first)]
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv").dropna(subset=["eval/return"])
    assert metrics.env_frames.tolist() == [0, 10, 20, 30]
    calls.clear()
    zero = baseline(cfg, tmp_path / "zero", "zero")
    assert baseline(cfg, tmp_path / "zero-again", "zero") == zero  # deterministic
    baseline(cfg, tmp_path / "random", "random")
    assert calls == [(3, first)] * 3
    status = pd.read_json(tmp_path / "zero" / "status.json", typ="series")
    assert status["status"] == "done" and status["eval_return"] == zero
