"""The fake-batch check of an objective: ``wmbench objectives check NAME``, also run by ``train``,
``suite run`` and ``suite run --dry-run`` on every objective before any environment is created.

``check_objective`` builds the objective twice with tiny ``ModelDims`` — Gaussian latents in Dream
to Control's layer style (ReLU convolutions, ELU dense layers, no normalisation) and categorical
latents in DreamerV3's (SiLU, LayerNorm) — and on a fake batch (``fake_inputs``: B = 2, T = 4,
random pixels through a fresh encoder and RSSM) does what the world model does with it:
``after_update`` once, ``forward``, backward, ``after_update`` again, ``decode``. Each problem is
one line naming the objective, where it comes from, what is wrong and the fix:

- the class: ``name`` a str; ``Config`` a frozen dataclass with a default for every field, whose
  defaults validate and survive ``config.yaml`` (``to_dict``/``from_dict``); ``loss_scales`` a
  dict of loss names to floats >= 0;
- the output: an ``ObjectiveOutput`` whose losses are floating ``[B, T]`` tensors, finite, named
  as ``loss_scales`` declares; metrics finite detached scalars;
- purity: ``forward`` changes no parameter or buffer of the objective, the encoder or the RSSM;
- gradients: every trainable parameter of the objective gets a finite gradient from its losses,
  and the losses reach the encoder or the RSSM (else they would not shape the representation);
- ``after_update`` runs and changes neither the encoder nor the RSSM; ``decode`` returns ``None``
  or float ``[B, T, 3, 64, 64]``.

Everything runs on the CPU under a fixed seed of its own (the global random state is restored), in
well under a second per objective for the built-ins.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from wmbench.agents.config import SUPPORTED_IMAGE_SIZE, RSSMConfig
from wmbench.configio import ConfigError, from_dict, to_dict
from wmbench.nn.nets import ConvEncoder
from wmbench.nn.rssm import RSSM
from wmbench.objectives.base import ModelDims, Objective, ObjectiveInputs, ObjectiveOutput
from wmbench.objectives.registry import entry
from wmbench.testing import random_batch

B, T, ACTION, CNN_DEPTH = 2, 4, 2, 4
"""Fake batch: B sequences of T steps, A = 2, encoder depth 4 (E = 128)."""

LATENTS: dict[str, tuple[RSSMConfig, str, str, str]] = {
    "gaussian": (RSSMConfig(deter=8, stoch=4, classes=0, hidden=8, act="elu", norm="none"),
                 "relu", "elu", "none"),
    "categorical": (RSSMConfig(deter=8, stoch=2, classes=3, hidden=8, act="silu", norm="layer"),
                    "silu", "silu", "layer"),
}
"""Latent kind to (RSSM config, ``cnn_act``, ``act``, ``norm``) of the fake world model."""

CONFIG_FIX = "make Config a @dataclass(frozen=True) whose every field has a valid default"


class ObjectiveCheckError(ConfigError):
    """An objective failed its check; the message is its first problem, one line."""


@dataclass(frozen=True)
class CheckReport:
    """The result of ``check_objective``.

    Attributes:
        name: the objective's name.
        origin: ``built-in``, the entry point and distribution, or ``class module.Class`` for a
            class that is not registered.
        problems: one line each: ``objective NAME (ORIGIN): what is wrong; the fix``.
        losses: loss names ``forward`` returned (Gaussian latents).
        metrics: metric names it returned (Gaussian latents).
        parameters: its trainable parameters at the fake dims (Gaussian latents).
        decodes: ``decode`` returned images.
        seconds: wall time of the check.
    """

    name: str
    origin: str
    problems: tuple[str, ...]
    losses: tuple[str, ...]
    metrics: tuple[str, ...]
    parameters: int
    decodes: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: the name, origin, time, losses, metrics, decoder and parameters."""
        return (
            f"objective {self.name!r} ({self.origin}): passed in {self.seconds:.2f} s "
            f"(Gaussian and categorical latents); losses: {', '.join(self.losses) or 'none'}; "
            f"metrics: {', '.join(self.metrics) or 'none'}; decoder: "
            f"{'yes' if self.decodes else 'no'}; {self.parameters:,} parameters at the check's "
            "tiny sizes"
        )


def fake_inputs(latent: str = "gaussian", seed: int = 0) -> tuple[ModelDims, ObjectiveInputs]:
    """A tiny world model's dims and one batch of objective inputs computed through it.

    A fresh encoder (depth 4) and RSSM (D = 8; Gaussian S = 4, or categorical 2 × 3) observe
    random uint8 images; ``is_first`` is true at t = 0, where ``prev_action`` is zero. Gradients
    flow from the inputs into the encoder and RSSM, as in training. Leaves the global random state
    as it was.

    Args:
        latent: ``gaussian`` or ``categorical``.
        seed: seeds the networks and the batch.

    Returns:
        ``(dims, inputs)``: ``ModelDims`` for building the objective, and ``ObjectiveInputs`` with
        B = 2, T = 4, A = 2 (``image`` uint8 ``[2, 4, 3, 64, 64]``, ``feat`` ``[2, 4, F]``, ...).

    Raises:
        KeyError: ``latent`` is not one of ``LATENTS``.
    """
    rssm_config, cnn_act, act, norm = LATENTS[latent]
    batch = random_batch(B, T, ACTION, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = ConvEncoder(CNN_DEPTH, batch.image.shape[2], cnn_act, norm)
        rssm = RSSM(rssm_config, encoder.embed_dim, ACTION)
        prev_action = batch.prev_action * (~batch.is_first)[..., None].float()
        embed = encoder(batch.image)
        post, prior = rssm.observe(embed, prev_action, batch.is_first)
    dims = ModelDims(
        image_shape=(batch.image.shape[2], SUPPORTED_IMAGE_SIZE, SUPPORTED_IMAGE_SIZE),
        embed=encoder.embed_dim,
        deter=rssm_config.deter,
        stoch=rssm_config.stoch_flat,
        feat=rssm_config.feat_dim,
        action=ACTION,
        cnn_depth=CNN_DEPTH,
        cnn_act=cnn_act,
        act=act,
        norm=norm,
    )
    inputs = ObjectiveInputs(
        image=batch.image,
        embed=embed,
        post=post,
        prior=prior,
        feat=rssm.feat(post),
        prev_action=prev_action,
        reward=batch.reward,
        is_first=batch.is_first,
        encoder=encoder,
        rssm=rssm,
    )
    return dims, inputs


def origin(cls: type) -> str:
    """Where ``cls`` comes from: its registry entry's origin if it is the class registered under
    its name, else ``class module.Class``."""
    name = getattr(cls, "name", None)
    if isinstance(name, str):
        try:
            found = entry(name)
        except ConfigError:
            found = None
        if found is not None and found.target == f"{cls.__module__}:{cls.__qualname__}":
            return found.origin()
    return f"class {cls.__module__}.{cls.__qualname__}"


def _label(cls: type, where: str | None = None) -> str:
    """``objective NAME (ORIGIN)``, the start of every problem line."""
    return f"objective {getattr(cls, 'name', cls.__qualname__)!r} ({where or origin(cls)})"


def _config_problem(cls: type) -> tuple[str, str] | None:
    """What is wrong with ``cls.Config`` itself, as ``(what, fix)``, or ``None``."""
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        return f"Config is {config!r}, not a dataclass", CONFIG_FIX
    if not config.__dataclass_params__.frozen:
        return f"Config {config.__qualname__} is not frozen", "declare it @dataclass(frozen=True)"
    for f in dataclasses.fields(config):
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            return f"Config field {f.name!r} has no default", CONFIG_FIX
    try:
        default = from_dict(config, {}, where="objective_config")
    except Exception as err:  # noqa: BLE001 - a plugin's __post_init__ may raise anything
        return f"its default Config does not validate ({type(err).__name__}: {err})", CONFIG_FIX
    try:
        again = from_dict(config, to_dict(default), where="objective_config")
    except TypeError as err:
        return (
            f"its Config cannot be read back from config.yaml ({err})",
            "use field types int, float, bool, str, Literal[...], X | None, tuple[X, ...], "
            "dict[str, X] or a nested frozen dataclass",
        )
    if again != default:
        return (
            "its default Config changes when written to config.yaml and read back",
            "use plain field types (tuples rather than lists) and keep __post_init__ from "
            "rewriting fields",
        )
    return None


def build_config(cls: type[Objective], values: Mapping[str, Any]) -> Any:
    """``cls.Config`` built strictly from ``values`` (the run's ``objective_config``).

    Raises:
        ObjectiveCheckError: ``Config`` itself is broken (the plugin's fault): not a frozen
            dataclass, a field without default, invalid defaults.
        ConfigError: ``values`` has an unknown key, a wrong type or an invalid value (the
            configuration's fault); the message starts with ``objective_config``.
    """
    problem = _config_problem(cls)
    if problem is not None:
        raise ObjectiveCheckError(f"{_label(cls)}: {problem[0]}; {problem[1]}")
    return from_dict(cls.Config, values, where="objective_config")


def _scales_problem(cls: type) -> tuple[str, str] | None:
    scales = getattr(cls, "loss_scales", None)
    if not isinstance(scales, Mapping) or not all(
        isinstance(k, str)
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and v >= 0
        for k, v in scales.items()
    ):
        return (
            f"loss_scales is {scales!r}",
            "make it a dict of each loss name forward returns to its default weight, a float "
            ">= 0, e.g. loss_scales = {'mine': 1.0}",
        )
    return None


def _where(err: BaseException, cls: type) -> str:
    """`` (at FILE:LINE)``: the innermost frame of ``err`` in ``cls``'s file, else outside torch."""
    frames = traceback.extract_tb(err.__traceback__)
    try:
        own = inspect.getsourcefile(cls)
    except TypeError:
        own = None
    torch_dir = str(Path(torch.__file__).parent)
    mine = [f for f in frames if f.filename == own] or [
        f for f in frames if not f.filename.startswith(torch_dir)
    ]
    return f" (at {mine[-1].filename}:{mine[-1].lineno})" if mine else ""


def output_problems(
    out: Any, batch_shape: tuple[int, int], values: bool = True
) -> list[tuple[str, str]]:
    """What is wrong with an objective's output, as ``(what, fix)`` pairs.

    Args:
        out: what ``forward`` returned.
        batch_shape: ``(B, T)``.
        values: also check that losses and metrics are finite and metrics detached (one host
            sync per tensor; the world model skips this during training).
    """
    if not isinstance(out, ObjectiveOutput) or not isinstance(out.losses, Mapping):
        return [(f"forward returned {type(out).__name__}", "return ObjectiveOutput(losses=...)")]
    if not isinstance(out.metrics, Mapping):
        return [(f"its metrics are a {type(out.metrics).__name__}", "return a dict of name to "
                 "detached scalar tensor")]
    found = []
    for key, loss in out.losses.items():
        if not (isinstance(loss, Tensor) and loss.is_floating_point()):
            found.append((f"loss {key!r} is {type(loss).__name__} "
                          f"{getattr(loss, 'dtype', '')}".rstrip(),
                          "return a floating-point tensor [B, T] per loss"))
        elif tuple(loss.shape) != batch_shape:
            found.append((
                f"loss {key!r} has shape {tuple(loss.shape)}, expected {batch_shape} = [B, T]",
                "return one unscaled loss per batch position; the world model averages it",
            ))
        elif values and not bool(torch.isfinite(loss).all()):
            found.append((f"loss {key!r} is not finite (NaN or inf)",
                          "guard its logs, divisions and exponentials (e.g. clamp, eps)"))
    for key, value in out.metrics.items():
        if not (isinstance(value, Tensor) and value.dim() == 0 and value.is_floating_point()):
            found.append((f"metric {key!r} is not a 0-dim floating-point tensor",
                          "return scalars, e.g. x.float().mean().detach()"))
        elif values and (value.requires_grad or not math.isfinite(float(value))):
            state = "not detached" if value.requires_grad else "not finite"
            found.append((f"metric {key!r} is {state}",
                          "return finite values computed from detached tensors"))
    return found


def check_output(objective: Objective, out: Any, batch_shape: tuple[int, int]) -> None:
    """The training-time check of an objective's output: type and shapes only (no host sync).

    Raises:
        ValueError: one line naming the objective, the problem and the fix.
    """
    problems = output_problems(out, batch_shape, values=False)
    if problems:
        what, fix = problems[0]
        raise ValueError(f"{_label(type(objective))}: {what}; {fix}")


def _snapshot(*modules: nn.Module) -> dict[str, Tensor]:
    return {
        f"{i}.{k}": v.detach().clone()
        for i, m in enumerate(modules)
        for k, v in m.state_dict().items()
    }


def _changed(before: dict[str, Tensor], modules: tuple[nn.Module, ...], names: list[str]) -> list:
    """The submodules (``objective.target``, ``encoder.net``, ...) holding a parameter or buffer
    that differs from ``before``."""
    after = _snapshot(*modules)
    out: dict[str, None] = {}
    for key, value in before.items():
        if key not in after or not torch.equal(value, after[key]):
            index, _, rest = key.partition(".")
            out[f"{names[int(index)]}.{rest.split('.')[0]}"] = None
    return list(out)


def _after_update(objective: Any, world: tuple, cls: type, note) -> bool:
    """Call ``objective.after_update(encoder, rssm)`` as the module does (no grad); ``note`` what
    it raised. Returns whether it ran."""
    try:
        with torch.no_grad():
            objective.after_update(*world)
    except Exception as err:  # noqa: BLE001
        note(f"after_update raised {type(err).__name__}: {err}{_where(err, cls)}",
             "fix after_update(encoder, rssm)")
        return False
    return True


def _check_latent(cls: type, config: Any, latent: str, note) -> dict[str, Any]:
    """Build, run and differentiate the objective on ``latent``'s fake batch; ``note(what, fix)``
    records each problem. Returns what it saw (``losses``, ``metrics``, ``parameters``,
    ``decodes``)."""
    seen: dict[str, Any] = {}
    dims, inp = fake_inputs(latent)
    world = (inp.encoder, inp.rssm)
    try:
        objective = cls(config, dims)
    except Exception as err:  # noqa: BLE001
        note(f"building it raised {type(err).__name__}: {err}{_where(err, cls)}",
             "fix __init__(config, dims); take sizes from ModelDims")
        return seen
    objective.train()
    seen["parameters"] = sum(p.numel() for p in objective.parameters() if p.requires_grad)
    if not _after_update(objective, world, cls, note):
        return seen
    before = _snapshot(objective, *world)
    try:
        out = objective(inp)
    except Exception as err:  # noqa: BLE001
        note(f"forward raised {type(err).__name__}: {err}{_where(err, cls)}", "fix forward(inp)")
        return seen
    problems = output_problems(out, (B, T))
    for what, fix in problems:
        note(what, fix)
    if problems:
        return seen
    seen["losses"], seen["metrics"] = tuple(out.losses), tuple(out.metrics)
    changed = _changed(before, (objective, *world), ["objective", "encoder", "rssm"])
    if changed:
        note(f"forward changed parameters or buffers of {', '.join(changed)}",
             "forward must be pure: move state changes (EMA targets) to after_update(), build "
             "BatchNorm with track_running_stats=False, never change inp.encoder or inp.rssm")
    if out.losses:
        total = sum(loss.float().mean() for loss in out.losses.values())
        if not total.requires_grad:
            note("its losses carry no gradient",
                 "compute them from the inputs' tensors without detaching or torch.no_grad()")
            return seen
        total.backward()
        own = [(n, p) for n, p in objective.named_parameters() if p.requires_grad]
        missing = [n for n, p in own if p.grad is None]
        broken = [n for n, p in own if p.grad is not None and not bool(p.grad.isfinite().all())]
        if missing:
            note(f"parameters {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} get "
                 "no gradient from its losses",
                 "use them in a loss, or freeze them (EMATarget targets are frozen)")
        if broken:
            note(f"parameters {', '.join(broken[:3])} get non-finite gradients",
                 "guard its logs, divisions and exponentials (e.g. clamp, eps)")
        shared = [p for m in world for p in m.parameters()]
        if not any(p.grad is not None and bool(p.grad.ne(0).any()) for p in shared):
            note("its losses reach neither the encoder nor the RSSM, so they do not shape the "
                 "representation",
                 "compute them from inp.embed, inp.feat, inp.post, inp.prior, inp.encoder(...) or "
                 "inp.rssm without detaching")
    before = _snapshot(*world)
    _after_update(objective, world, cls, note)
    if _changed(before, world, ["encoder", "rssm"]):
        note("after_update changed the world model's encoder or RSSM",
             "change only the objective's own state (e.g. EMATarget.update)")
    try:
        with torch.no_grad():
            images = objective.decode(inp.feat.detach())
    except Exception as err:  # noqa: BLE001
        note(f"decode raised {type(err).__name__}: {err}{_where(err, cls)}", "fix decode(feat)")
        return seen
    if images is not None and not (
        isinstance(images, Tensor)
        and images.is_floating_point()
        and tuple(images.shape) == (B, T, *dims.image_shape)
    ):
        note(f"decode returned {getattr(images, 'shape', type(images).__name__)}, expected "
             f"float {(B, T, *dims.image_shape)} = [..., C, H, W]",
             "return float images in [-0.5, 0.5] pixel scale, or None without a decoder")
    seen["decodes"] = images is not None
    return seen


def check_objective(cls: type, config: Any = None) -> CheckReport:
    """Check an objective class on fake batches (see the module docstring); never raises for the
    objective's own errors.

    Args:
        cls: the objective's class.
        config: an instance of ``cls.Config``, a mapping of its values (``objective_config``), or
            ``None`` for its defaults.

    Returns:
        The report; ``report.problems`` is empty if the objective passed.
    """
    started = time.perf_counter()
    where = origin(cls)
    label = _label(cls, where)
    found: dict[tuple[str, str], list[str]] = {}

    def note(what: str, fix: str, latent: str = "") -> None:
        found.setdefault((what, fix), []).append(latent)

    def report(seen: dict[str, Any]) -> CheckReport:
        lines = []
        for (what, fix), latents in found.items():
            kinds = " and ".join(k for k in latents if k)
            lines.append(f"{label}: {what}{f' ({kinds} latents)' if kinds else ''}; {fix}")
        return CheckReport(
            name=str(getattr(cls, "name", cls.__qualname__)),
            origin=where,
            problems=tuple(lines),
            losses=seen.get("losses", ()),
            metrics=seen.get("metrics", ()),
            parameters=seen.get("parameters", 0),
            decodes=seen.get("decodes", False),
            seconds=time.perf_counter() - started,
        )

    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        note(f"{cls!r} is not a subclass of wmbench.objectives.Objective", "subclass Objective")
        return report({})
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        note("the class has no name", "set the class attribute name = '<its registry key>'")
    if (problem := _scales_problem(cls)) is not None:
        note(*problem)
    if config is None or isinstance(config, Mapping):
        if (problem := _config_problem(cls)) is not None:
            note(*problem)
            return report({})
        try:
            config = from_dict(cls.Config, config or {}, where="objective_config")
        except ConfigError as err:
            note(f"the given configuration is invalid: {err}", "fix objective_config")
            return report({})
    seen: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for latent in LATENTS:
            result = _check_latent(cls, config, latent, lambda w, f, k=latent: note(w, f, k))
            seen = seen or result
    declared, returned = set(cls.loss_scales or {}), set(seen.get("losses", ()))
    if "losses" in seen and declared != returned:
        example = ", ".join(f"{k!r}: 1.0" for k in sorted(returned))
        note(f"forward returns losses {sorted(returned)} but loss_scales declares "
             f"{sorted(declared)}", "make loss_scales' keys the names of the losses it returns, "
             f"e.g. loss_scales = {{{example}}}")
    return report(seen)


_passed: dict[tuple[type, str], CheckReport] = {}


def require_ok(cls: type[Objective], config: Any) -> CheckReport:
    """``check_objective(cls, config)``, run once per class and configuration in this process.

    Raises:
        ObjectiveCheckError: the objective has a problem: its first one, one line (pointing to
            ``wmbench objectives check NAME`` for the others).
    """
    key = (cls, repr(config))
    report = _passed.get(key) or check_objective(cls, config)
    if report.problems:
        more = len(report.problems) - 1
        raise ObjectiveCheckError(
            report.problems[0]
            + (f" ({more} more: wmbench objectives check {report.name})" if more else "")
        )
    _passed[key] = report
    return report
