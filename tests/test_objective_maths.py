"""The maths of the prototypes, self_predictive and tpc objectives and their shared parts
(random shifts, EMA targets, Sinkhorn-Knopp)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import IMAGE_SHAPE, A, random_batch, tiny_wm_config
from wmbench import objectives
from wmbench.agents.module import world_model_loss
from wmbench.agents.world_model import WorldModel
from wmbench.objectives import EMATarget, random_shift
from wmbench.objectives.prototypes import sinkhorn


def build(name: str, **objective_config) -> WorldModel:
    torch.manual_seed(0)
    cls = objectives.get(name)
    return WorldModel(tiny_wm_config(), IMAGE_SHAPE, A, cls, cls.Config(**objective_config))


def test_sinkhorn_meets_both_marginals():
    scores = torch.randn(12, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    q = sinkhorn(scores, eps=0.5, iters=200)
    assert q.shape == (12, 5) and (q >= 0).all()
    torch.testing.assert_close(
        q.sum(1), torch.ones(12, dtype=torch.float64)
    )  # one distribution per sample
    torch.testing.assert_close(
        q.sum(0), torch.full((5,), 12 / 5, dtype=torch.float64)
    )  # equipartition
    # few iterations: rows exact, columns only approximately equal
    q3 = sinkhorn(scores, eps=0.5, iters=3)
    torch.testing.assert_close(q3.sum(1), torch.ones(12, dtype=torch.float64))
    # a sample's assignment follows its scores: the argmax of each row is kept when the scores are
    # balanced
    balanced = 10 * torch.eye(4).repeat(2, 1)  # 8 samples, each prototype the best of exactly two
    assert torch.equal(sinkhorn(balanced, eps=0.05, iters=3).argmax(1), torch.arange(4).repeat(2))


def test_sinkhorn_spreads_identical_samples_evenly():
    # every sample prefers prototype 0; the equipartition constraint still spreads the batch
    scores = torch.tensor([[1.0, 0.0, 0.0]]).repeat(6, 1)
    q = sinkhorn(scores, eps=0.1, iters=50)
    torch.testing.assert_close(q, torch.full((6, 3), 1 / 3), atol=1e-5, rtol=0)


def test_ema_target_copies_then_moves_by_the_fraction_and_gets_no_gradient():
    torch.manual_seed(0)
    online = nn.Linear(3, 2)
    ema = EMATarget(0.25, net=nn.Linear(3, 2))
    ema.update(net=online)  # first update copies
    torch.testing.assert_close(ema["net"].weight, online.weight)
    old = ema["net"].weight.detach().clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    ema.update(net=online)
    torch.testing.assert_close(ema["net"].weight, old + 0.25 * (online.weight.detach() - old))
    assert int(ema.updates) == 2 and "updates" in ema.state_dict()
    assert all(not p.requires_grad for p in ema.parameters())
    with pytest.raises(ValueError, match="does not match"):
        ema.update(net=nn.Linear(3, 4))
    with pytest.raises(ValueError, match="update got"):
        ema.update(other=online)
    with pytest.raises(ValueError, match=r"fraction in \(0, 1\]"):
        EMATarget(0.0, net=nn.Linear(3, 2))


@pytest.mark.parametrize("preset", ["dreamer-v1", "dreamer-v3"])
def test_ema_target_with_encoder_matches_the_world_model_encoder(preset):
    wm = WorldModel(tiny_wm_config(preset), IMAGE_SHAPE, A, objectives.get("reward"), None)
    target = EMATarget.with_encoder(wm.dims, 0.5, head=nn.Linear(2, 2))
    assert list(target.nets) == ["encoder", "head"]
    shapes = {k: v.shape for k, v in wm.encoder.state_dict().items()}
    assert {k: v.shape for k, v in target["encoder"].state_dict().items()} == shapes
    target.update(encoder=wm.encoder, head=nn.Linear(2, 2))  # copies: same names and shapes
    image = random_batch().image
    torch.testing.assert_close(target["encoder"](image), wm.encoder(image))


@pytest.mark.parametrize("name", ["prototypes", "self_predictive"])
def test_ema_target_encoder_follows_the_world_model_encoder_in_after_update_only(name):
    wm = build(name, target_fraction=0.1)
    target = wm.objective.target["encoder"]
    for (_, t), (_, o) in zip(  # built: the target is a copy of the online encoder
        target.named_parameters(), wm.encoder.named_parameters(), strict=True
    ):
        assert torch.equal(t, o) and not t.requires_grad
    batch = random_batch()
    world_model_loss(wm, batch)[0].backward()
    assert all(t.grad is None for t in target.parameters())
    before = [t.detach().clone() for t in target.parameters()]
    with torch.no_grad():
        for p in wm.encoder.parameters():
            p.add_(0.5)
    for _ in range(3):  # forwards in training mode move nothing
        wm.loss(batch)
    assert all(torch.equal(t, b) for t, b in zip(target.parameters(), before, strict=True))
    wm.after_update()  # as after an optimizer step: one move by the fraction
    for t, b, o in zip(target.parameters(), before, wm.encoder.parameters(), strict=True):
        torch.testing.assert_close(t, b + 0.1 * (o.detach() - b))
    assert int(wm.objective.target.updates) == 2  # the copy at construction, this update


def test_random_shift_is_a_replicate_padded_crop_shared_over_time():
    image = torch.randint(
        0, 256, (3, 4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    assert random_shift(image, 0) is image
    out = random_shift(image, 2, generator=torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8 and out.shape == image.shape
    assert not torch.equal(out, image)  # some sequence moved
    padded = F.pad(image.flatten(0, 1).float(), (2, 2, 2, 2), mode="replicate").reshape(
        3, 4, 3, 20, 20
    )
    for b in range(3):
        crops = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[b, :, :, dy : dy + 16, dx : dx + 16], out[b].float())
        ]
        assert crops, f"sequence {b} is not one crop of its padded images at every time step"
    with pytest.raises(ValueError, match="B, T, C, W, W"):
        random_shift(image[0], 2)


def test_prototypes_losses_are_cross_entropies_to_the_sinkhorn_assignments():
    # without shifts both views are the image, and at the first update the target equals the online
    # nets
    wm = build("prototypes", prototypes=6, shift=0)
    seen = {}
    wm.objective.register_forward_hook(lambda m, args, out: seen.update(inp=args[0], out=out))
    wm.loss(random_batch())
    obj, inp, cfg = wm.objective, seen["inp"], wm.objective.config
    protos = F.normalize(obj.prototypes, dim=-1)
    with torch.no_grad():
        obs_scores = F.normalize(obj.obs_proj(inp.embed), dim=-1) @ protos.T  # [B, T, M]
        feat_scores = F.normalize(obj.feat_proj(inp.feat), dim=-1) @ protos.T
        w = sinkhorn(obs_scores.flatten(0, 1), cfg.sinkhorn_eps, cfg.sinkhorn_iters).reshape(
            obs_scores.shape
        )
        swav = -(w * F.log_softmax(obs_scores / cfg.temperature, -1)).sum(-1)
        temporal = -(w * F.log_softmax(feat_scores / cfg.temperature, -1)).sum(-1)
    torch.testing.assert_close(seen["out"].losses["swav"].detach(), swav)
    torch.testing.assert_close(seen["out"].losses["temporal"].detach(), temporal)
    assert (swav > 0).all()
    assert seen["out"].metrics["prototypes_used"] == torch.unique(w.argmax(-1)).numel() / 6


def test_self_predictive_is_zero_without_a_future_in_the_episode_and_bounded():
    wm = build("self_predictive", horizon=2)
    batch = random_batch(batch=2, steps=4)
    batch.is_first[1, 2] = True  # a new episode starts at t = 2 in the second sequence
    seen = {}
    wm.objective.register_forward_hook(lambda m, args, out: seen.update(out=out))
    wm.loss(batch)
    loss = seen["out"].losses["self_predictive"]
    assert loss.shape == (2, 4)
    assert loss[:, -1].eq(0).all()  # no future step inside the sequence
    assert loss[1, 1] == 0  # its only future steps lie in the next episode
    others = torch.ones(2, 4, dtype=torch.bool)
    others[:, -1] = others[1, 1] = False
    assert (loss[others] > 0).all()
    assert (loss <= 4 * 2).all()  # each of K = 2 terms is 2 - 2 cos in [0, 4]
    assert -1 <= seen["out"].metrics["cosine"] <= 1


def test_tpc_is_log_n_for_an_uninformative_critic_and_zero_at_episode_starts():
    wm = build("tpc")
    with torch.no_grad():  # every prediction and every code the same: all scores equal
        wm.objective.code.weight.zero_()
        wm.objective.predictor.net[-1].weight.zero_()
    seen = {}
    wm.objective.register_forward_hook(lambda m, args, out: seen.update(out=out))
    batch = random_batch(batch=2, steps=3)
    wm.loss(batch)
    loss = seen["out"].losses["tpc"]
    want = torch.full((2, 3), math.log(2 * 3))
    want[batch.is_first] = 0.0
    torch.testing.assert_close(loss, want)
