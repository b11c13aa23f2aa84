"""CURL-style contrastive objective (Laskin, Srinivas & Abbeel, *CURL: Contrastive Unsupervised
Representations for Reinforcement Learning*, ICML 2020, Sec. 4), as a wmbench plugin.

Two random-shift views of every observation (DrQ's shifts standing in for CURL's random crops).
The world model's encoder and a projection g embed the first view (queries q_i); an EMA copy of
both embeds the second (keys k_j, no gradient). A learned bilinear form W scores every query
against every key of the batch, and InfoNCE picks each query's own key among the N = B·T keys:

    L_i = −ln [exp(q_iᵀ W k_i) / Σ_j exp(q_iᵀ W k_j)]

Gradients reach the world model's encoder through the queries; the RSSM is shaped only by the core
losses. This file imports nothing from wmbench but ``wmbench.objectives``, the plugin API.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wmbench.objectives import (
    EMATarget,
    ModelDims,
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    info_nce,
    random_shift,
)


@dataclass(frozen=True)
class CurlConfig:
    """Options of the CURL objective (``objective_config`` in a run or suite).

    Attributes:
        code: size of the projection g(e) of the encoder's embedding (50).
        shift: largest random shift of each view, in pixels (4).
        target_fraction: share of the online encoder and projection moved into the key encoder
            after each update, 1 − τ (0.05: CURL's momentum τ = 0.95).
    """

    code: int = 50
    shift: int = 4
    target_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.code < 1 or self.shift < 0 or not 0 < self.target_fraction <= 1:
            raise ValueError(
                "code must be >= 1, shift >= 0 and target_fraction in (0, 1], got "
                f"{self.code}, {self.shift}, {self.target_fraction}"
            )


class CurlObjective(Objective):
    """Bilinear InfoNCE between two shifted views (momentum key encoder), per step in nats."""

    name = "curl"
    Config = CurlConfig
    loss_scales = {"curl": 1.0}  # loss name -> default weight in the world-model loss

    def __init__(self, config: CurlConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        self.proj = nn.Sequential(nn.Linear(dims.embed, config.code), nn.LayerNorm(config.code))
        self.bilinear = nn.Parameter(torch.eye(config.code))  # W, starts as the dot product
        self.target = EMATarget.with_encoder(  # key encoder: a copy of the world model's encoder
            dims,
            config.target_fraction,
            proj=nn.Sequential(nn.Linear(dims.embed, config.code), nn.LayerNorm(config.code)),
        )

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        """Returns loss ``"curl"`` ``[B, T]`` (nats, ln N when uninformative) and the share of
        queries whose own key scores highest (``accuracy``)."""
        shift = self.config.shift
        query = self.proj(inp.encoder(random_shift(inp.image, shift))).flatten(0, 1)  # [N, P]
        with torch.no_grad():
            key = self.target["proj"](self.target["encoder"](random_shift(inp.image, shift)))
        scores = query @ self.bilinear @ key.flatten(0, 1).T  # [N, N]; positives on the diagonal
        loss = info_nce(scores).reshape(inp.is_first.shape)
        hits = scores.argmax(1) == torch.arange(len(scores), device=scores.device)
        return ObjectiveOutput(losses={"curl": loss}, metrics={"accuracy": hits.float().mean()})

    def after_update(self, encoder: nn.Module, rssm: nn.Module) -> None:
        """The key encoder and projection follow the online ones (first call: a copy)."""
        self.target.update(encoder=encoder, proj=self.proj)
