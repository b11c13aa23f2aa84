"""Every configuration of the agent: RSSM, KL term, world model, actor-critic, and the whole agent.

Frozen dataclasses with a docstring per field; plain data, no torch, so ``wmbench.run_config``
composes them (and the suite planner and the command line read them) without loading the networks.
Each network receives its own sub-config (``wmbench.nn.rssm.RSSM`` its ``RSSMConfig``, and so on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUPPORTED_IMAGE_SIZE = 64
"""Side of the square images Dreamer's conv encoder and decoder take (``wmbench.nn.nets``)."""


@dataclass(frozen=True)
class RSSMConfig:
    """RSSM sizes and latent type.

    Attributes:
        deter: size D of the GRU state h_t (Dreamer v1: 200).
        stoch: Gaussian size S, or number of categorical groups S (Dreamer v1: 30 Gaussian).
        classes: K classes per group; 0 selects Gaussian latents (DreamerV2/V3: 32).
        hidden: width of the hidden layers before the GRU and in the prior/posterior nets (200).
        min_std: lower bound added to the softplus std of Gaussian latents (0.1).
        unimix: uniform mixture weight of categorical latents (0.01).
    """

    deter: int = 200
    stoch: int = 30
    classes: int = 0
    hidden: int = 200
    min_std: float = 0.1
    unimix: float = 0.01

    def __post_init__(self) -> None:
        for name in ("deter", "stoch", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"rssm.{name} must be >= 1, got {getattr(self, name)}")
        if self.classes < 0 or self.classes == 1:
            raise ValueError(f"rssm.classes must be 0 (Gaussian) or >= 2, got {self.classes}")

    @property
    def stoch_flat(self) -> int:
        """Flattened stochastic size: S (Gaussian) or S*K (categorical)."""
        return self.stoch * self.classes if self.classes else self.stoch

    @property
    def feat_dim(self) -> int:
        """F = D + flattened stoch."""
        return self.deter + self.stoch_flat


@dataclass(frozen=True)
class KLConfig:
    """KL term between posterior and prior, with KL balancing and free nats.

    Attributes:
        free_nats: lower clamp (nats) of each KL side, applied per ``(B, T)`` position to the KL
            summed over latent dimensions, before averaging (DreamerV3 eq. 5; 1.0).
        dyn_scale: weight of the dynamics side KL(sg(post) || prior), training the prior (0.5).
        rep_scale: weight of the representation side KL(post || sg(prior)), training the posterior
            (0.1). ``dyn_scale = rep_scale`` recovers the unbalanced KL of Dreamer v1.
    """

    free_nats: float = 1.0
    dyn_scale: float = 0.5
    rep_scale: float = 0.1


@dataclass(frozen=True)
class WorldModelConfig:
    """World-model networks and loss weights.

    Attributes:
        rssm: RSSM sizes.
        kl: KL balancing and free nats.
        cnn_depth: encoder/decoder channel multiplier (Dreamer: 32).
        units: hidden width of the reward and continue heads (400).
        layers: hidden layers of the reward and continue heads (2).
        reward_scale: weight of the reward NLL (1.0).
        cont_scale: weight of the continue NLL (1.0).
        objective_scales: weight per objective loss name (missing names weigh 1.0).
        lr: Adam learning rate (6e-4, Dreamer v1).
        eps: Adam epsilon (1e-5).
        grad_clip: gradient-norm clip (100).
    """

    rssm: RSSMConfig = field(default_factory=RSSMConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    cnn_depth: int = 32
    units: int = 400
    layers: int = 2
    reward_scale: float = 1.0
    cont_scale: float = 1.0
    objective_scales: dict[str, Any] = field(default_factory=dict)
    lr: float = 6e-4
    eps: float = 1e-5
    grad_clip: float = 100.0


@dataclass(frozen=True)
class ActorCriticConfig:
    """Imagination learner settings (defaults: Dreamer v1, Appendix A, unless noted).

    Attributes:
        imag_horizon: H, imagined steps per start state (15).
        discount: γ (0.99).
        lam: λ of the λ-return (0.95).
        units: hidden width of actor and critic MLPs (400).
        layers: hidden layers of actor and critic (3).
        actor_lr: Adam learning rate of the actor (8e-5).
        critic_lr: Adam learning rate of the critic (8e-5).
        grad_clip: gradient-norm clip of actor and critic (100).
        actor_entropy: weight of the sample-based entropy bonus (1e-4; Dreamer v1 uses none and
            Gaussian exploration noise instead).
        init_std: offset added before the softplus of the actor's std; 5.0 gives a pre-tanh std
            of ≈ 5 at initialisation, as in Dreamer v1.
        min_std: lower bound of the actor's std (1e-4).
        slow_critic_fraction: EMA fraction moving the slow critic toward the critic after every
            update (0.02; DreamerV3).
    """

    imag_horizon: int = 15
    discount: float = 0.99
    lam: float = 0.95
    units: int = 400
    layers: int = 3
    actor_lr: float = 8e-5
    critic_lr: float = 8e-5
    grad_clip: float = 100.0
    actor_entropy: float = 1e-4
    init_std: float = 5.0
    min_std: float = 1e-4
    slow_critic_fraction: float = 0.02


@dataclass(frozen=True)
class AgentConfig:
    """World model and imagination learner.

    Attributes:
        world_model: see ``WorldModelConfig``.
        actor_critic: see ``ActorCriticConfig``.
        log_every: log training metrics every this many updates (uses the last update's values).
    """

    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    log_every: int = 10
