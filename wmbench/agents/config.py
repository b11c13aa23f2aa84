"""Every configuration of the agent: RSSM, KL term, world model, actor-critic, and the whole agent.

Frozen dataclasses with a docstring per field; plain data, no torch, so ``wmbench.run_config``
composes them (and the suite planner and the command line read them) without loading the networks.
Each network receives its own sub-config (``wmbench.nn.rssm.RSSM`` its ``RSSMConfig``, and so on).

**Presets.** ``AgentConfig.preset`` names the paper whose agent the fields describe; the field
defaults are the ``dreamer-v3`` preset and ``PRESETS`` holds what ``dreamer-v1`` changes. A mapping
that names a preset is laid over that preset's values (``wmbench.configio.from_dict``), and an
override ``agent.preset=...`` starts the whole agent from that preset (``with_overrides``).

- ``dreamer-v3``: Hafner et al., *Mastering Diverse Domains through World Models*, 2023 (the
  first version, as in its 2023 code): categorical latents 32 × 32 with 1 % unimix, LayerNorm and
  SiLU everywhere, symlog two-hot reward and critic with zero-initialised outputs, KL balancing
  0.5 / 0.1 with 1 free nat per position, a bounded-std Normal actor trained by dynamics
  backpropagation on percentile-normalised returns with entropy 3e-4, the critic trained on its own
  λ-returns and regularised towards its EMA copy, γ = 0.997 (horizon 333), Adam 1e-4 / 3e-5 / 3e-5.
  Network sizes: the paper's size S (deter 512, hidden 512, CNN depth 32, 2 MLP layers of 512).
  Its replay schedule is ``train`` data: batch 16 × 64, train ratio 512 at action repeat 2
  (256 replayed steps per env frame).
- ``dreamer-v1``: Hafner et al., *Dream to Control*, ICLR 2020, App. A: Gaussian latents (30),
  deter 200, ELU dense layers and ReLU convolutions without normalisation, Gaussian reward head and
  critic, KL scale 1 with 3 free nats on the batch mean, tanh-Normal actor (4 layers) with
  exploration noise N(0, 0.3) while collecting, critic targets from the critic itself (no target
  network), γ = 0.99, Adam 6e-4 / 8e-5 / 8e-5, 100 updates on the prefill data before collection
  continues. Its replay schedule is ``train`` data: batch 50 × 50, 5,000 prefill frames, 100 updates
  every 1,000 env frames (250 replayed steps per env frame; wmbench spreads them evenly, train ratio
  500 at action repeat 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

SUPPORTED_IMAGE_SIZE = 64
"""Side of the square images Dreamer's conv encoder and decoder take (``wmbench.nn.nets``)."""

Activation = Literal["silu", "elu", "relu"]
Norm = Literal["layer", "none"]


@dataclass(frozen=True)
class RSSMConfig:
    """RSSM sizes, latent type and layer style.

    Attributes:
        deter: size D of the GRU state h_t (v3 size S: 512; v1: 200).
        stoch: Gaussian size S, or number of categorical groups S (v3: 32; v1: 30 Gaussian).
        classes: K classes per group; 0 selects Gaussian latents (v3: 32; v1: 0).
        hidden: width of the hidden layers before the GRU and in the prior/posterior nets (v3: 512;
            v1: 200).
        min_std: lower bound added to the softplus std of Gaussian latents (0.1).
        unimix: uniform mixture weight of categorical latents (0.01, DreamerV3).
        act: activation of the hidden layers (v3: silu; v1: elu).
        norm: ``layer`` (LayerNorm in the hidden layers and the GRU, v3) or ``none`` (v1).
    """

    deter: int = 512
    stoch: int = 32
    classes: int = 32
    hidden: int = 512
    min_std: float = 0.1
    unimix: float = 0.01
    act: Activation = "silu"
    norm: Norm = "layer"

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
        free_nats: lower clamp (nats) of each KL side (v3: 1.0; v1: 3.0).
        per: where the clamp applies: ``position`` (the KL summed over latent dimensions at each
            ``(B, T)`` position, before averaging; DreamerV3) or ``batch`` (the batch-mean KL;
            Dream to Control). See ``wmbench.nn.rssm.RSSM.kl_loss``.
        dyn_scale: weight of the dynamics side KL(sg(post) || prior), training the prior (v3: 0.5;
            v1: 1.0).
        rep_scale: weight of the representation side KL(post || sg(prior)), training the posterior
            (v3: 0.1; v1: 1.0). Equal scales of 1 give the gradient of Dream to Control's unbalanced
            KL term; the logged ``loss/kl`` then counts the KL once per side.
    """

    free_nats: float = 1.0
    per: Literal["position", "batch"] = "position"
    dyn_scale: float = 0.5
    rep_scale: float = 0.1


@dataclass(frozen=True)
class WorldModelConfig:
    """World-model networks and loss weights.

    Attributes:
        rssm: RSSM sizes.
        kl: KL balancing and free nats.
        cnn_depth: encoder/decoder channel multiplier (v3 size S and v1: 32).
        cnn_act: activation of the convolutions (v3: silu; v1: relu).
        units: hidden width of the reward and continue heads (v3: 512; v1: 400).
        layers: hidden layers of the reward and continue heads (2).
        act: activation of the heads' hidden layers (v3: silu; v1: elu).
        norm: ``layer`` (LayerNorm in the encoder, the heads and the objectives' networks, v3) or
            ``none`` (v1).
        reward_head: ``symlog_twohot`` (DreamerV3's two-hot over symlog bins, zero-initialised
            output) or ``gaussian`` (unit-variance Gaussian, v1).
        reward_scale: weight of the reward NLL (1.0).
        cont_scale: weight of the continue NLL (1.0).
        objective_scales: weight of each objective loss in the world-model loss, by the loss names
            the objective declares (``Objective.loss_scales``' keys, e.g. ``image`` for
            reconstruction); a name not set here takes the objective's default. Checked before any
            compute: unknown names and weights that are not floats >= 0 are errors.
        lr: Adam learning rate (v3: 1e-4; v1: 6e-4).
        eps: Adam epsilon (v3: 1e-8; v1: 1e-7, TensorFlow's default).
        grad_clip: gradient-norm clip (v3: 1000; v1: 100).
    """

    rssm: RSSMConfig = field(default_factory=RSSMConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    cnn_depth: int = 32
    cnn_act: Activation = "silu"
    units: int = 512
    layers: int = 2
    act: Activation = "silu"
    norm: Norm = "layer"
    reward_head: Literal["symlog_twohot", "gaussian"] = "symlog_twohot"
    reward_scale: float = 1.0
    cont_scale: float = 1.0
    objective_scales: dict[str, float] = field(default_factory=dict)
    lr: float = 1e-4
    eps: float = 1e-8
    grad_clip: float = 1000.0


@dataclass(frozen=True)
class ActorCriticConfig:
    """Imagination learner settings.

    Attributes:
        imag_horizon: H, imagined steps per start state (15).
        imag_starts: imagination start states per update: 0 starts from every posterior state of
            the batch (B·T, as both papers), n > 0 from n of them drawn at random (a compute saving
            for small CPU budgets; the draw uses torch's global generator).
        discount: γ (v3: 0.997, a horizon of 333 steps; v1: 0.99).
        lam: λ of the λ-return (0.95).
        units: hidden width of actor and critic MLPs (v3: 512; v1: 400).
        actor_layers: hidden layers of the actor (v3: 2; v1: 4).
        critic_layers: hidden layers of the critic (v3: 2; v1: 3).
        act: activation of their hidden layers (v3: silu; v1: elu).
        norm: ``layer`` (v3) or ``none`` (v1).
        actor_dist: ``bounded_normal`` (DreamerV3: Normal with mean tanh(x) and std in
            [min_std, max_std]; samples outside [-1, 1] are clipped by the env and scaled back by
            the RSSM) or ``tanh_normal`` (Dream to Control: tanh of a Normal).
        min_std: lower bound of the actor's std (v3: 0.1; v1: 1e-4).
        max_std: upper bound of the actor's std (``bounded_normal`` only; 1.0).
        init_std: ``tanh_normal`` only: offset added before the softplus of the std; 5.0 gives a
            pre-tanh std of ≈ 5 at initialisation, as in Dream to Control.
        actor_out_scale: factor on the initial weights of the actor's output layer (v3: 0.01, a
            near-zero mean at the start; v1: 1).
        actor_entropy: weight η of the policy-entropy bonus (v3: 3e-4 on normalised returns;
            v1: 0, it explores with ``expl_noise`` instead).
        return_norm: ``percentile`` (DreamerV3: returns divided by max(1, P95 − P5) of the
            imagined returns, both percentiles tracked as EMAs) or ``none`` (v1).
        return_norm_decay: EMA decay of the two percentiles (0.99).
        critic_dist: ``symlog_twohot`` (v3) or ``gaussian`` (unit variance, i.e. squared error; v1).
        critic_target: which critic's values enter the λ-return targets: ``critic`` (the critic
            itself; v3 adds a regulariser towards the slow critic, ``slow_reg``; v1 has none) or
            ``slow`` (the slow critic, DreamerV2's target network).
        slow_critic_fraction: EMA fraction moving the slow critic toward the critic after every
            update (0.02, DreamerV3).
        slow_reg: weight of the critic's log-likelihood of the slow critic's values (v3: 1.0;
            v1: 0).
        actor_lr: Adam learning rate of the actor (v3: 3e-5; v1: 8e-5).
        critic_lr: Adam learning rate of the critic (v3: 3e-5; v1: 8e-5).
        eps: Adam epsilon of actor and critic (v3: 1e-5; v1: 1e-7).
        grad_clip: gradient-norm clip of actor and critic (100).
        expl_noise: std of Gaussian noise added to the actions the agent collects with, before
            clipping to [-1, 1] (v1: 0.3; v3: 0, its policy keeps std ≥ 0.1).
    """

    imag_horizon: int = 15
    imag_starts: int = 0
    discount: float = 0.997
    lam: float = 0.95
    units: int = 512
    actor_layers: int = 2
    critic_layers: int = 2
    act: Activation = "silu"
    norm: Norm = "layer"
    actor_dist: Literal["bounded_normal", "tanh_normal"] = "bounded_normal"
    min_std: float = 0.1
    max_std: float = 1.0
    init_std: float = 5.0
    actor_out_scale: float = 0.01
    actor_entropy: float = 3e-4
    return_norm: Literal["percentile", "none"] = "percentile"
    return_norm_decay: float = 0.99
    critic_dist: Literal["symlog_twohot", "gaussian"] = "symlog_twohot"
    critic_target: Literal["critic", "slow"] = "critic"
    slow_critic_fraction: float = 0.02
    slow_reg: float = 1.0
    actor_lr: float = 3e-5
    critic_lr: float = 3e-5
    eps: float = 1e-5
    grad_clip: float = 100.0
    expl_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.imag_horizon < 1 or self.imag_starts < 0:
            raise ValueError(
                f"actor_critic.imag_horizon must be >= 1 and imag_starts >= 0, got "
                f"{self.imag_horizon} and {self.imag_starts}"
            )
        if not 0 < self.min_std <= self.max_std:
            raise ValueError(
                f"actor_critic needs 0 < min_std <= max_std, got {self.min_std} and {self.max_std}"
            )


@dataclass(frozen=True)
class AgentConfig:
    """World model and imagination learner.

    Attributes:
        preset: the paper whose agent the defaults follow, ``dreamer-v3`` or ``dreamer-v1`` (see
            the module docstring); fields set beside it override it.
        world_model: see ``WorldModelConfig``.
        actor_critic: see ``ActorCriticConfig``.
        pretrain_updates: updates made on the prefill data as soon as it is collected, before
            collection continues (v1: 100; v3: 0).
        log_every: log training metrics every this many updates (uses the last update's values).
        grad_norm_every: every this many updates measure the gradient norm each world-model loss
            term puts on the encoder and RSSM, which every objective shares
            (``train/grad_norm/shared/<term>``); one extra backward pass per term; a multiple of
            ``log_every`` (the measuring update is a logged one), or 0 for never.
    """

    PRESETS: ClassVar[dict[str, Mapping[str, Any]]] = {
        "dreamer-v3": {},
        "dreamer-v1": {
            "world_model": {
                "rssm": {
                    "deter": 200,
                    "stoch": 30,
                    "classes": 0,
                    "hidden": 200,
                    "act": "elu",
                    "norm": "none",
                },
                "kl": {"free_nats": 3.0, "per": "batch", "dyn_scale": 1.0, "rep_scale": 1.0},
                "cnn_depth": 32,
                "cnn_act": "relu",
                "units": 400,
                "layers": 2,
                "act": "elu",
                "norm": "none",
                "reward_head": "gaussian",
                "lr": 6e-4,
                "eps": 1e-7,
                "grad_clip": 100.0,
            },
            "actor_critic": {
                "discount": 0.99,
                "units": 400,
                "actor_layers": 4,
                "critic_layers": 3,
                "act": "elu",
                "norm": "none",
                "actor_dist": "tanh_normal",
                "min_std": 1e-4,
                "actor_out_scale": 1.0,
                "actor_entropy": 0.0,
                "return_norm": "none",
                "critic_dist": "gaussian",
                "critic_target": "critic",
                "slow_reg": 0.0,
                "actor_lr": 8e-5,
                "critic_lr": 8e-5,
                "eps": 1e-7,
                "expl_noise": 0.3,
            },
            "pretrain_updates": 100,
        },
    }
    """What each preset sets on top of the field defaults (``dreamer-v3``)."""

    preset: Literal["dreamer-v3", "dreamer-v1"] = "dreamer-v3"
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    pretrain_updates: int = 0
    log_every: int = 10
    grad_norm_every: int = 100

    def __post_init__(self) -> None:
        if self.pretrain_updates < 0 or self.log_every < 1:
            raise ValueError(
                f"agent.pretrain_updates must be >= 0 and log_every >= 1, got "
                f"{self.pretrain_updates} and {self.log_every}"
            )
        if self.grad_norm_every < 0 or self.grad_norm_every % self.log_every:
            raise ValueError(
                f"agent.grad_norm_every={self.grad_norm_every} must be 0 or a multiple of "
                f"agent.log_every={self.log_every}"
            )
