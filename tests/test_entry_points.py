"""A third-party objective registered only through an installed entry point, trained end to end."""

from __future__ import annotations

import importlib
import math
import sys
import textwrap

import pandas as pd
import pytest

from conftest import tiny_run_dict
from wmbench import objectives
from wmbench.configio import from_dict
from wmbench.objectives import ENTRY_POINT_GROUP
from wmbench.run_config import RunConfig
from wmbench.runtime.train import train

MODULE = "toy_wmbench_plugin_mod"

PLUGIN_SOURCE = textwrap.dedent(
    """
    from dataclasses import dataclass

    from torch import nn

    from wmbench.objectives import ModelDims, Objective, ObjectiveInputs, ObjectiveOutput


    @dataclass(frozen=True)
    class ToyConfig:
        scale: float = 1.0


    class ToyObjective(Objective):
        name = "toy"
        Config = ToyConfig

        def __init__(self, config: ToyConfig, dims: ModelDims) -> None:
            super().__init__(config, dims)
            self.head = nn.Linear(dims.feat, 1)

        def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
            pred = self.head(inp.feat).squeeze(-1)
            loss = self.config.scale * (pred - inp.reward) ** 2
            metrics = {"toy_pred": pred.detach().mean()}
            return ObjectiveOutput(losses={"toy_mse": loss}, metrics=metrics)
    """
)


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """Writes the plugin module and a fake installed distribution declaring its entry point."""
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{MODULE}.py").write_text(PLUGIN_SOURCE)
    dist = site / "toy_wmbench_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toy-wmbench-plugin\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntoy = {MODULE}:ToyObjective\n")
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield
    sys.modules.pop(MODULE, None)
    importlib.invalidate_caches()


def test_entry_point_objective_is_discovered(toy_plugin):
    table = objectives.available()
    assert table["toy"] == f"{MODULE}:ToyObjective"
    for builtin in ("reward", "reconstruction", "contrastive"):
        assert builtin in table
    cls = objectives.get("toy")
    assert cls.__name__ == "ToyObjective" and cls.__module__ == MODULE
    assert issubclass(cls, objectives.Objective)
    assert cls is sys.modules[MODULE].ToyObjective


def test_entry_point_objective_trains_through_lightning(toy_plugin, tmp_path):
    data = tiny_run_dict(objective="toy")
    data["objective_config"] = {"scale": 2.0}
    cfg = from_dict(RunConfig, data)
    summary = train(cfg, tmp_path / "run")
    assert summary["updates"] == 2
    assert summary["env_frames"] == 10
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    column = "train/loss/objective/toy_mse"
    assert column in metrics.columns
    values = metrics[column].dropna()
    assert len(values) == 2  # log_every=1: one row per update
    assert all(math.isfinite(v) and v >= 0 for v in values)
    assert "train/objective/toy_pred" in metrics.columns


def test_entry_point_cannot_shadow_builtin(tmp_path, monkeypatch):
    site = tmp_path / "site2"
    (site / "shadow_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "shadow_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: shadow-plugin\nVersion: 0.1\n"
    )
    (site / "shadow_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nreward = nowhere:Nothing\n"
    )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    assert objectives.available()["reward"] == "wmbench.objectives.reward:RewardObjective"
    assert objectives.get("reward").__name__ == "RewardObjective"
