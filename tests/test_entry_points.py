"""Third-party objectives registered through installed entry points: one trained end to end with
its provenance recorded, and every way an entry point can be broken, each one error line."""

from __future__ import annotations

import importlib
import json
import math
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from conftest import tiny_run_dict
from wmbench import objectives
from wmbench.cli import main
from wmbench.configio import from_dict
from wmbench.objectives import ENTRY_POINT_GROUP, ObjectiveLoadError, available
from wmbench.objectives.registry import BUILTIN
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
        loss_scales = {"toy_mse": 1.0}

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


def install(site: Path, dist: str, entries: dict[str, str], modules: dict[str, str]) -> None:
    """A fake installed distribution ``dist`` 0.1 in ``site`` declaring ``entries`` (key to
    value) in the objectives group, with the given top-level modules (name to source)."""
    site.mkdir(exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path for fake distributions; their modules are forgotten afterwards."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    before = set(sys.modules)
    yield path
    for name in set(sys.modules) - before:
        if name.startswith(("toy_wmbench", "broken_")):
            del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def toy_plugin(site):
    """The toy objective, installed as distribution toy-wmbench-plugin 0.1."""
    install(site, "toy-wmbench-plugin", {"toy": f"{MODULE}:ToyObjective"}, {MODULE: PLUGIN_SOURCE})
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


def test_a_plugin_suite_records_its_provenance_and_own_metrics_in_the_report(toy_plugin, tmp_path):
    suite = tmp_path / "suite.yaml"
    tiny = tiny_run_dict()
    config = {key: tiny[key] for key in ("env", "agent", "train")}
    del config["env"]["task"]
    suite.write_text(
        "name: p\nobjectives: [toy]\ntasks: [toy:reach]\nseeds: [0, 1]\n"
        f"config: {json.dumps(config)}\n"
    )
    out = tmp_path / "runs"
    assert main(["suite", "run", str(suite), "--out", str(out)]) == 0
    versions = json.loads((out / "p" / "versions.json").read_text())
    assert versions["objectives"] == {
        "toy": {
            "objective": "toy",
            "origin": "plugin",
            "distribution": "toy-wmbench-plugin",
            "version": "0.1",
            "entry_point": f"{MODULE}:ToyObjective",
        }
    }
    assert versions["wmbench"] == "0.1.0"  # the package versions stay beside it
    assert main(["report", str(out / "p"), "-o", str(tmp_path / "rep"), "--reps", "20"]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    section = report.split("## Objectives", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| toy")]
    assert rows[0] == ["toy", "toy", "plugin", "toy-wmbench-plugin 0.1", f"{MODULE}:ToyObjective"]
    finals = {  # the last logged value of each run, by hand
        name: [pd.read_csv(out / "p" / f"toy-toy_reach-s{seed}" / "metrics.csv")[f"train/{name}"]
               .dropna().iloc[-1] for seed in (0, 1)]
        for name in ("loss/objective/toy_mse", "objective/toy_pred", "scale/objective/toy_mse")
    }
    assert rows[1:] == [
        ["toy", name, f"{pd.Series(values).mean():.4g} ± {pd.Series(values).std():.2g}"]
        for name, values in finals.items()
    ]
    assert "| objectives" not in report  # provenance is not a package row


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


ORIGIN = "of broken-plugin 0.1 (group wmbench.objectives)"
REINSTALL = (
    "reinstall it (pip install -e <its directory>) or uninstall it (pip uninstall broken-plugin)"
)
BROKEN = {
    "typo": (
        "toy_wmbench_plugin_mdo:ToyObjective",
        "module 'toy_wmbench_plugin_mdo' not found (No module named 'toy_wmbench_plugin_mdo'); "
        "fix the entry point's value in the distribution's pyproject.toml and " + REINSTALL,
    ),
    "noattr": (
        f"{MODULE}:ToyObjectiv",
        f"module '{MODULE}' has no attribute 'ToyObjectiv'; fix the entry point's value in the "
        "distribution's pyproject.toml and " + REINSTALL,
    ),
    "nocolon": (
        MODULE,
        f"the value '{MODULE}' is not 'module:Class'; write the class after a colon, e.g. nocolon "
        '= "my_package.my_module:MyObjective", in [project.entry-points."wmbench.objectives"] of '
        "broken-plugin's pyproject.toml, then " + REINSTALL,
    ),
    "reward": (
        f"{MODULE}:ToyObjective",
        "the key shadows the built-in objective 'reward'; rename the entry point and the class's "
        "name (e.g. to 'reward_broken_plugin') in [project.entry-points.\"wmbench.objectives\"] of "
        "broken-plugin's pyproject.toml, then " + REINSTALL,
    ),
    "mismatch": (
        f"{MODULE}:ToyObjective",
        "class ToyObjective has name = 'toy' but is registered as 'mismatch'; set name = "
        "'mismatch' in the class, or register it under the key 'toy'",
    ),
    "raises": (
        "broken_at_import:Anything",
        "importing 'broken_at_import' raised RuntimeError: plugin bug (at {site}/"
        "broken_at_import.py:1); fix the plugin's module",
    ),
}


@pytest.fixture
def broken_plugins(site):
    """Distribution broken-plugin 0.1 declaring one broken entry point per ``BROKEN`` case."""
    install(
        site,
        "broken-plugin",
        {key: value for key, (value, _) in BROKEN.items()},
        {MODULE: PLUGIN_SOURCE, "broken_at_import": "raise RuntimeError('plugin bug')\n"},
    )
    importlib.invalidate_caches()
    return site


def expected(key: str, site: Path) -> str:
    value, message = BROKEN[key]
    return f"objective {key!r} (entry point {key} = {value!r} {ORIGIN}): " + message.format(
        site=site
    )


@pytest.mark.parametrize("key", list(BROKEN))
def test_a_broken_entry_point_is_one_error_line_and_exit_2_before_any_env(
    key, broken_plugins, tmp_path, monkeypatch, capsys
):
    def no_env(*args, **kwargs):
        raise AssertionError("an environment was created")

    monkeypatch.setattr("wmbench.runtime.env_pool.make_env", no_env)
    out = tmp_path / "runs"
    assert main(["train", "--objective", key, "--task", "toy:reach", "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"wmbench: error: {expected(key, broken_plugins)}\n"
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: s\nobjectives: [{key}]\ntasks: [toy:reach]\nseeds: [0]\n")
    assert main(["suite", "run", str(suite), "--out", str(out), "--dry-run"]) == 2
    assert capsys.readouterr().err == (
        f"wmbench: error: invalid suite: {suite}: {expected(key, broken_plugins)}\n"
    )
    assert main(["objectives", "check", key]) == 2
    assert capsys.readouterr().err == f"wmbench: error: {expected(key, broken_plugins)}\n"
    assert not out.exists()


def test_the_listing_marks_broken_entries_and_where_each_comes_from(broken_plugins, capsys):
    assert main(["objectives"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    starts = [header.index(name) for name in ("name", "origin", "class", "status")]
    rows: dict[str, list[tuple[str, ...]]] = {}
    for line in lines:
        key, *cells = (line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True))
        rows.setdefault(key, []).append(tuple(cells))
    assert rows["reward"][0] == ("built-in", BUILTIN["reward"], "ok")  # and its shadow after it
    for key, (value, message) in BROKEN.items():
        origin, target, status = rows[key][-1]
        assert origin == "broken-plugin 0.1" and target == value
        what = message.format(site=broken_plugins).partition(";")[0]
        assert status == f"BROKEN: {what} (wmbench objectives check {key})"
    others = set(available()) - set(BUILTIN) - set(BROKEN)  # e.g. the installed example plugin
    assert sum(len(v) for v in rows.values()) == len(BUILTIN) + len(BROKEN) + len(others)


def test_two_distributions_with_one_key_is_an_error(site):
    for dist in ("plugin-a", "plugin-b"):
        install(site, dist, {"toy": f"{MODULE}:ToyObjective"}, {MODULE: PLUGIN_SOURCE})
    importlib.invalidate_caches()
    with pytest.raises(ObjectiveLoadError) as err:
        objectives.get("toy")
    assert str(err.value).endswith(
        "the key is registered by 2 distributions (plugin-a, plugin-b); rename it in one of "
        "them, or uninstall one"
    )
