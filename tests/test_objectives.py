"""Objective contract (every registered objective), InfoNCE maths, overfitting and the registry."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import IMAGE_SHAPE, PRESETS, A, B, T, random_batch, tiny_run_dict, tiny_wm_config
from wmbench import objectives
from wmbench.agents.config import RSSMConfig
from wmbench.agents.module import world_model_loss
from wmbench.agents.world_model import WorldModel
from wmbench.configio import from_dict
from wmbench.objectives import (
    ObjectiveInputs,
    ObjectiveOutput,
    UnknownObjectiveError,
    gaussian_log_density_matrix,
    info_nce,
)
from wmbench.objectives.registry import BUILTIN
from wmbench.run_config import RunConfig
from wmbench.runtime.train import train
from wmbench.types import Batch

LATENTS = {
    "gaussian": RSSMConfig(deter=8, stoch=4, classes=0, hidden=8),
    "categorical": RSSMConfig(deter=8, stoch=2, classes=3, hidden=8),
}


def build(name: str, seed: int = 0, objective_config: dict | None = None, **kw) -> WorldModel:
    torch.manual_seed(seed)
    cls = objectives.get(name)
    return WorldModel(
        tiny_wm_config(**kw), IMAGE_SHAPE, A, cls, cls.Config(**(objective_config or {}))
    )


def test_builtins_are_registered():
    builtins = {"reward", "reconstruction", "contrastive", "prototypes", "self_predictive", "tpc"}
    assert builtins == set(BUILTIN) and builtins <= set(objectives.available())


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("latent", sorted(LATENTS))
@pytest.mark.parametrize("name", sorted(objectives.available()))
def test_objective_contract(name, latent, preset, batch):
    wm = build(name, rssm=LATENTS[latent], preset=preset)
    seen = {}

    def hook(module, args, output):
        seen["inp"], seen["out"] = args[0], output

    wm.objective.register_forward_hook(hook)
    total, post, metrics = world_model_loss(wm, batch)

    # the world-model loss: finite scalar equal to the sum of its logged terms
    assert total.dim() == 0 and torch.isfinite(total)
    terms = {k: v for k, v in metrics.items() if k.startswith("loss/")}
    assert {"loss/reward", "loss/cont", "loss/kl"} <= set(terms)
    torch.testing.assert_close(torch.stack(list(terms.values())).sum(), total.detach())
    for key, value in metrics.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0, key
        assert not value.requires_grad, key
        assert torch.isfinite(value), key
    assert post.deter.shape[:2] == (B, T)

    # the objective itself, on the inputs the world model gave it
    inp = seen["inp"]
    assert isinstance(inp, ObjectiveInputs)
    assert inp.image.dtype == torch.uint8 and inp.image.shape == (B, T, *IMAGE_SHAPE)
    assert inp.feat.shape == (B, T, wm.dims.feat)
    assert inp.embed.shape == (B, T, wm.dims.embed)
    out = wm.objective(inp)
    assert isinstance(out, ObjectiveOutput)
    for key, loss in out.losses.items():
        assert loss.shape == (B, T), key
        assert torch.isfinite(loss).all(), key
        assert f"loss/objective/{key}" in metrics
    for key, value in out.metrics.items():
        assert value.dim() == 0 and not value.requires_grad and torch.isfinite(value), key
        assert f"objective/{key}" in metrics

    total.backward()
    grads = {n: p.grad for n, p in wm.named_parameters() if p.grad is not None}
    assert grads, "no gradients at all"
    for n, g in grads.items():
        assert torch.isfinite(g).all(), n
    assert any(torch.count_nonzero(g) > 0 for n, g in grads.items() if n.startswith("encoder."))
    assert any(torch.count_nonzero(g) > 0 for n, g in grads.items() if n.startswith("rssm."))
    own = [n for n, _ in wm.objective.named_parameters()]
    if own and out.losses:
        assert any(
            torch.count_nonzero(grads.get(f"objective.{n}", torch.zeros(1))) > 0 for n in own
        )


def test_reward_objective_adds_no_loss_and_no_parameters(batch):
    wm = build("reward")
    assert list(wm.objective.parameters()) == []
    _, _, metrics = world_model_loss(wm, batch)
    assert not any(k.startswith("loss/objective/") for k in metrics)


def test_objective_scales_weight_the_objective_loss(batch):
    base = build("contrastive", seed=3)
    scaled = build("contrastive", seed=3, objective_scales={"infonce": 2.5})
    torch.manual_seed(11)
    _, _, m1 = world_model_loss(base, batch)
    torch.manual_seed(11)
    _, _, m2 = world_model_loss(scaled, batch)
    default = base.objective.loss_scales.get("infonce", 1.0)
    assert m1["scale/objective/infonce"].item() == pytest.approx(default)
    assert m2["scale/objective/infonce"].item() == 2.5
    torch.testing.assert_close(
        m2["loss/objective/infonce"], 2.5 / default * m1["loss/objective/infonce"]
    )
    torch.testing.assert_close(m2["loss/reward"], m1["loss/reward"])


def test_the_reward_of_a_windows_first_row_is_trained(batch):
    """Replay.sample forces is_first on each window's first row; its reward stays a target.

    (Gaussian reward head: a two-hot head starts uniform, with the same loss for every target.)"""
    wm = build("reward", preset="dreamer-v1")
    changed = dataclasses.replace(batch, reward=batch.reward.clone())
    changed.reward[:, 0] += 1.0
    losses = []
    for b in (batch, changed):
        torch.manual_seed(0)
        losses.append(world_model_loss(wm, b)[2]["loss/reward"])
    assert not torch.equal(*losses)


def test_info_nce_constant_scores_is_log_n():
    for n in (1, 2, 7):
        scores = torch.full((n, n), -3.2)
        torch.testing.assert_close(info_nce(scores), torch.full((n,), math.log(n)))


def test_info_nce_diagonal_scores_near_zero_and_matches_definition():
    n = 5
    scores = 100.0 * torch.eye(n) + torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    loss = info_nce(scores)
    assert loss.shape == (n,)
    assert (loss >= 0).all()
    assert loss.max().item() < 1e-6
    # general case: logsumexp_j s_ij - s_ii, checked elementwise
    s = torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = torch.tensor(
        [
            math.log(sum(math.exp(s[i, j].item()) for j in range(4))) - s[i, i].item()
            for i in range(4)
        ]
    )
    torch.testing.assert_close(info_nce(s), want.double())
    # swapping which column is the positive changes the loss: the diagonal really is the positive
    assert info_nce(100.0 * torch.eye(3).flip(0))[0] > 50


def test_gaussian_log_density_matrix_matches_torch_normal():
    g = torch.Generator().manual_seed(0)
    n, m, f = 5, 4, 3
    x = torch.randn(n, f, generator=g, dtype=torch.float64)
    mean = torch.randn(m, f, generator=g, dtype=torch.float64)
    std = torch.rand(m, f, generator=g, dtype=torch.float64) + 0.1
    got = gaussian_log_density_matrix(x, mean, std)
    assert got.shape == (n, m)
    for i in range(n):
        for j in range(m):
            want = torch.distributions.Normal(mean[j], std[j]).log_prob(x[i]).sum()
            torch.testing.assert_close(got[i, j], want, rtol=1e-10, atol=1e-10)


def _structured_batch() -> Batch:
    """Fixed batch with blocky (8x8-pixel) random colour images and a constant reward of 2."""
    low = torch.randint(
        0, 256, (B, T, 3, 8, 8), generator=torch.Generator().manual_seed(5), dtype=torch.uint8
    )
    image = low.repeat_interleave(8, -1).repeat_interleave(8, -2)
    return dataclasses.replace(random_batch(seed=0), image=image, reward=torch.full((B, T), 2.0))


# name -> (metric to track, constant lower bound removed before comparing, lr, steps, zero
# reward/cont scales)
OVERFIT = {
    # reward adds no loss: track the world-model loss above its floor 0.5 ln 2π + free nats · (dyn +
    # rep)
    "reward": (None, 0.5 * math.log(2 * math.pi) + 1.0 * 0.6, 1e-2, 40, False),
    # Gaussian NLL summed over pixels: remove the constant 0.5 ln 2π per pixel
    "reconstruction": (
        "loss/objective/image",
        0.5 * math.log(2 * math.pi) * 3 * 64 * 64,
        1e-2,
        40,
        True,
    ),
    "contrastive": ("loss/objective/infonce", 0.0, 1e-3, 100, True),
    # cross-entropy to Sinkhorn targets; few prototypes (below) keep the targets' entropy, its
    # floor, low
    "prototypes": ("loss/objective/temporal", 0.0, 1e-2, 40, True),
    "self_predictive": ("loss/objective/self_predictive", 0.0, 1e-3, 40, True),
    "tpc": ("loss/objective/tpc", 0.0, 1e-3, 100, True),
}
OVERFIT_CONFIG = {"prototypes": {"prototypes": 8}}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_overfitting_a_fixed_batch_lowers_the_objective_loss(name):
    key, floor, lr, steps, only_objective = OVERFIT[name]
    kw = dict(reward_scale=0.0, cont_scale=0.0) if only_objective else {}
    wm = build(name, seed=0, objective_config=OVERFIT_CONFIG.get(name), **kw)
    opt = torch.optim.Adam(wm.parameters(), lr=lr)
    batch = _structured_batch()
    history = []
    for _ in range(steps):
        loss, _, metrics = world_model_loss(wm, batch)
        value = loss.detach() if key is None else metrics[key]
        history.append(value.item() - floor)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    first, last = history[0], sum(history[-10:]) / 10
    assert first > 0
    assert last < 0.6 * first, (first, last)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_trains_two_updates_in_the_tiny_run(tmp_path, name):
    summary = train(from_dict(RunConfig, tiny_run_dict(objective=name)), tmp_path / name)
    assert summary["updates"] == 2
    logged = pd.read_csv(tmp_path / name / "metrics.csv")
    losses = [c for c in logged.columns if c.startswith("train/loss/objective/")]
    assert bool(losses) == (name != "reward")  # reward adds no loss
    values = logged[losses].dropna()
    assert np.isfinite(values.to_numpy()).all() and (len(values) == 2 or not losses)


def test_unknown_objective_lists_available_names():
    with pytest.raises(UnknownObjectiveError) as info:
        objectives.get("no-such-objective")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "no-such-objective" in message
    for name in objectives.available():
        assert name in message
