"""The fake-batch check of objectives (``wmbench objectives check``, run before every train and
suite), objective_scales validation, and the rule that built-in objectives use only the plugin
API."""

from __future__ import annotations

import ast
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import tiny_run_dict
from wmbench.cli import main
from wmbench.configio import ConfigError, from_dict, with_overrides
from wmbench.objectives import (
    EMATarget,
    ModelDims,
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    check_objective,
    fake_inputs,
    get,
    registry,
)
from wmbench.objectives.registry import BUILTIN
from wmbench.run_config import RunConfig, prepare

HERE = __name__


@dataclass(frozen=True)
class HeadConfig:
    """Attributes: scale: weight of the squared error."""

    scale: float = 1.0


class Good(Objective):
    """Predicts the reward from the state: a valid objective that the others break one way."""

    name = "good"
    Config = HeadConfig
    loss_scales = {"mse": 1.0}

    def __init__(self, config: HeadConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        self.head = nn.Linear(dims.feat, 1)

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        pred = self.head(inp.feat).squeeze(-1)
        loss = self.config.scale * (pred - inp.reward) ** 2
        return ObjectiveOutput(losses={"mse": loss}, metrics={"pred": pred.detach().mean()})


class WrongShape(Good):
    name = "wrong_shape"

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        out = super().forward(inp)
        return ObjectiveOutput(losses={"mse": out.losses["mse"].mean(1)})  # [B]


class NaNLoss(Good):
    name = "nan_loss"

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        out = super().forward(inp)
        return ObjectiveOutput(losses={"mse": out.losses["mse"].log() - math.inf})


class MissingGradient(Good):
    name = "missing_gradient"

    def __init__(self, config: HeadConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        self.unused = nn.Linear(dims.feat, 2)


@dataclass(frozen=True)
class BadDefaultConfig:
    """Attributes: temperature: must be > 0 (its default is not)."""

    temperature: float = 0.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


class BadConfig(Good):
    name = "bad_config"
    Config = BadDefaultConfig


class EMAInForward(Good):
    """The side effect the hooks replace: a target moved in forward."""

    name = "ema_in_forward"

    def __init__(self, config: HeadConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        self.target = EMATarget.with_encoder(dims, 0.1)

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        self.target.update(encoder=inp.encoder)
        return super().forward(inp)


class Detached(Good):
    name = "detached"

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        pred = self.head(inp.feat.detach()).squeeze(-1)
        return ObjectiveOutput(losses={"mse": (pred - inp.reward) ** 2})


class Misdeclared(Good):
    name = "misdeclared"
    loss_scales = {"mse_loss": 1.0}


class Undeclared(Good):
    name = "undeclared"
    loss_scales = {}


def label(cls: type) -> str:
    return f"objective {cls.name!r} (class {HERE}.{cls.__qualname__})"


FAILURES = {
    WrongShape: "loss 'mse' has shape (2,), expected (2, 4) = [B, T] (gaussian and categorical "
    "latents); return one unscaled loss per batch position; the world model averages it",
    NaNLoss: "loss 'mse' is not finite (NaN or inf) (gaussian and categorical latents); guard its "
    "logs, divisions and exponentials (e.g. clamp, eps)",
    MissingGradient: "parameters unused.weight, unused.bias get no gradient from its losses "
    "(gaussian and categorical latents); use them in a loss, or freeze them (EMATarget targets "
    "are frozen)",
    BadConfig: "its default Config does not validate (ConfigError: objective_config: invalid "
    "BadDefaultConfig: temperature must be > 0, got 0.0); make Config a @dataclass(frozen=True) "
    "whose every field has a valid default",
    EMAInForward: "forward changed parameters or buffers of objective.target (gaussian and "
    "categorical latents); forward must be pure: move state changes (EMA targets) "
    "to after_update(), build BatchNorm with track_running_stats=False, never change inp.encoder "
    "or inp.rssm",
    Detached: "its losses reach neither the encoder nor the RSSM, so they do not shape the "
    "representation (gaussian and categorical latents); compute them from inp.embed, inp.feat, "
    "inp.post, inp.prior, inp.encoder(...) or inp.rssm without detaching",
    Misdeclared: "forward returns losses ['mse'] but loss_scales declares ['mse_loss']; make "
    "loss_scales' keys the names of the losses it returns, e.g. loss_scales = {'mse': 1.0}",
    Undeclared: "forward returns losses ['mse'] but loss_scales declares []; make loss_scales' "
    "keys the names of the losses it returns, e.g. loss_scales = {'mse': 1.0}",
}


@pytest.mark.parametrize("cls", list(FAILURES), ids=lambda c: c.name)
def test_the_check_names_each_problem_and_its_fix_in_one_line(cls):
    report = check_objective(cls)
    assert report.problems == (f"{label(cls)}: {FAILURES[cls]}",)
    assert not report.ok


def test_a_valid_objective_passes_and_the_global_random_state_is_left_alone():
    state = torch.get_rng_state()
    report = check_objective(Good, {"scale": 2.0})
    assert torch.equal(torch.get_rng_state(), state)
    assert report.ok and report.problems == ()
    assert (report.losses, report.metrics, report.decodes) == (("mse",), ("pred",), False)
    assert report.parameters == 8 + 4 + 1  # head: F = 8 + 4 (Gaussian latents) weights, one bias
    assert report.origin == f"class {HERE}.Good"


def test_a_bad_given_configuration_is_a_problem_of_that_configuration():
    report = check_objective(Good, {"scal": 2.0})
    assert report.problems == (
        f"{label(Good)}: the given configuration is invalid: objective_config.scal: unknown key "
        "'scal'; did you mean 'scale'? (allowed keys: scale); fix objective_config",
    )


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_passes_the_check(name):
    cls = get(name)
    report = check_objective(cls)
    assert report.problems == ()
    assert report.origin == "built-in" and set(report.losses) == set(cls.loss_scales)
    assert report.decodes == (name == "reconstruction")


def test_fake_inputs_have_the_documented_shapes_and_both_latent_kinds():
    for latent, stoch in (("gaussian", (4,)), ("categorical", (2, 3))):
        dims, inp = fake_inputs(latent)
        assert inp.image.dtype == torch.uint8 and inp.image.shape == (2, 4, 3, 64, 64)
        assert inp.post.stoch.shape == (2, 4, *stoch) and dims.stoch == math.prod(stoch)
        assert inp.feat.shape == (2, 4, dims.feat) and dims.feat == 8 + dims.stoch
        assert inp.embed.shape == (2, 4, dims.embed) and inp.embed.requires_grad
        assert inp.is_first[:, 0].all() and not inp.is_first[:, 1:].any()
        assert (inp.prev_action[:, 0] == 0).all()
    assert dataclasses.astuple(fake_inputs("gaussian")[0])[-3:] == ("relu", "elu", "none")
    assert dataclasses.astuple(fake_inputs("categorical")[0])[-3:] == ("silu", "silu", "layer")


@pytest.fixture
def registered(monkeypatch):
    """Registers this module's objectives as if built in."""
    for cls in [Good, *FAILURES]:
        monkeypatch.setitem(BUILTIN, cls.name, f"{HERE}:{cls.__qualname__}")


def test_cli_check_prints_one_error_line_per_problem_and_exits_2(registered, capsys):
    assert main(["objectives", "check", "good"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("objective 'good' (built-in): passed in ") and err == ""
    assert main(["objectives", "check", "good", "wrong_shape", "nan_loss"]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"wmbench: error: objective '{cls.name}' (built-in): {FAILURES[cls]}"
        for cls in (WrongShape, NaNLoss)
    ]
    assert out.count("passed in") == 1


@pytest.mark.parametrize("cls", [WrongShape, NaNLoss, MissingGradient, BadConfig])
def test_train_and_dry_run_stop_a_failing_objective_before_any_env(cls, registered, tmp_path,
                                                                   monkeypatch, capsys):
    def no_env(*args, **kwargs):
        raise AssertionError("an environment was created")

    monkeypatch.setattr("wmbench.runtime.env_pool.make_env", no_env)
    out = tmp_path / "runs"
    args = ["train", "--objective", cls.name, "--task", "toy:reach", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == f"wmbench: error: objective '{cls.name}' (built-in): {FAILURES[cls]}\n"
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: s\nobjectives: [{cls.name}]\ntasks: [toy:reach]\nseeds: [0]\n")
    assert main(["suite", "run", str(suite), "--out", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"wmbench: error: invalid suite: {suite}: objective '{cls.name}' (built-in): "
        f"{FAILURES[cls]}\n"
    )
    assert not out.exists()


def _cfg(objective: str, *overrides: str) -> RunConfig:
    return with_overrides(from_dict(RunConfig, tiny_run_dict(objective=objective)), overrides)


def test_objective_scales_are_checked_against_the_declared_loss_names():
    prepare(_cfg("prototypes", "agent.world_model.objective_scales.swav=0.5"))  # declared: fine
    cases = {
        "agent.world_model.objective_scales.temporl=2": "agent.world_model.objective_scales."
        "temporl: objective 'prototypes' has no loss 'temporl'; did you mean 'temporal'? its "
        "losses: 'swav', 'temporal'",
        "agent.world_model.objective_scales.swav=-1": "agent.world_model.objective_scales.swav: "
        "must be a finite float >= 0, got -1.0",
        "agent.world_model.objective_scales.swav=.nan": "agent.world_model.objective_scales.swav:"
        " must be a finite float >= 0, got nan",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError) as err:
            prepare(_cfg("prototypes", override))
        assert str(err.value) == message
    with pytest.raises(ConfigError) as err:
        prepare(_cfg("reward", "agent.world_model.objective_scales.image=2"))
    assert str(err.value) == (
        "agent.world_model.objective_scales.image: objective 'reward' has no loss 'image'; its "
        "losses: none"
    )


def test_a_non_number_scale_is_one_error_line_before_compute(tmp_path, capsys):
    args = ["train", "--objective", "reconstruction", "--task", "toy:reach",
            "--set", "agent.world_model.objective_scales.image=big", "--out", str(tmp_path)]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "wmbench: error: override 'agent.world_model.objective_scales.image=big': "
        "config.agent.world_model.objective_scales.image: expected float, got 'big' (str)\n"
    )
    assert not list(tmp_path.iterdir())


def test_suites_set_scales_per_objective_entry(tmp_path):
    from wmbench.suite.spec import load_suite

    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: s\nobjectives: [reward, {name: recon-x2, objective: reconstruction, "
        "objective_scales: {image: 2}}]\ntasks: [toy:reach]\nseeds: [0]\n"
    )
    _, runs = load_suite(suite)
    assert [r.config.agent.world_model.objective_scales for r in runs] == [{}, {"image": 2.0}]
    suite.write_text(suite.read_text().replace("image: 2", "imag: 2"))
    with pytest.raises(ConfigError) as err:
        load_suite(suite)
    assert str(err.value) == (
        f"invalid suite: {suite}: suite.objectives[1].objective_scales.imag: objective "
        "'reconstruction' has no loss 'imag'; did you mean 'image'? its losses: 'image'"
    )
    suite.write_text(
        "name: s\nobjectives: [reconstruction]\ntasks: [toy:reach]\nseeds: [0]\n"
        "config: {agent: {world_model: {objective_scales: {image: 2}}}}\n"
    )
    with pytest.raises(ConfigError, match="set objective_scales in an entry of the suite's"):
        load_suite(suite)


@pytest.mark.parametrize(
    "objective, override, message",
    [
        ("prototypes", "temperature=0", "PrototypesConfig: temperature and sinkhorn_eps must be "
         "> 0, target_fraction in (0, 1]"),
        ("contrastive", "units=0", "ContrastiveConfig: units and layers must be >= 1 and min_std "
         "> 0, got 0, 2, 0.1"),
        ("tpc", "min_std=0", "TPCConfig: code, units and layers must be >= 1 and min_std > 0, got "
         "32, 400, 2, 0.0"),
    ],
)
def test_an_invalid_objective_config_is_one_error_without_a_doubled_prefix(objective, override,
                                                                           message):
    with pytest.raises(ConfigError) as err:
        prepare(_cfg(objective, f"objective_config.{override}"))
    assert str(err.value) == f"objective_config: invalid {message}"


API_MODULES = {"__init__", "augment", "base", "check", "ema", "nce", "registry"}
"""The plugin API's modules; every other module of ``wmbench/objectives`` is a built-in."""


def test_builtin_objectives_import_only_the_plugin_api():
    package = Path(registry.__file__).parent
    builtins = {p.stem for p in package.glob("*.py")} - API_MODULES
    assert builtins == {target.split(":")[0].rsplit(".", 1)[1] for target in BUILTIN.values()}
    for stem in sorted(builtins):
        for node in ast.walk(ast.parse((package / f"{stem}.py").read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith("wmbench") or name == "wmbench.objectives", (stem, name)
