"""The CURL plugin, installed (pip install -e examples/objective-plugin): it passes wmbench's
fake-batch check through its entry point, its loss is the InfoNCE it claims to be, and its suite is
valid."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from wmbench.cli import main
from wmbench.objectives import available, check_objective, fake_inputs, get


def test_the_installed_entry_point_passes_the_objective_check():
    assert "curl" in available(), "install the plugin: pip install -e examples/objective-plugin"
    report = check_objective(get("curl"))
    assert report.problems == ()
    assert report.origin.startswith("entry point curl = 'wmbench_curl.objective:CurlObjective'")
    assert report.losses == ("curl",) and report.metrics == ("accuracy",)


def test_uninformative_scores_give_log_n_and_matching_views_near_zero():
    cls = get("curl")
    dims, inp = fake_inputs("categorical")
    objective = cls(cls.Config(shift=0), dims)  # both views are the image itself
    objective.after_update(inp.encoder, inp.rssm)  # as the world model does: keys = queries now
    n = inp.image.shape[0] * inp.image.shape[1]  # every query has N - 1 negatives
    with torch.no_grad():
        objective.bilinear.zero_()  # every score 0
    loss = objective(inp).losses["curl"]
    torch.testing.assert_close(loss, torch.full(inp.is_first.shape, math.log(n)))
    with torch.no_grad():
        objective.bilinear.copy_(100 * torch.eye(cls.Config().code))  # sharp dot product
    out = objective(inp)
    assert out.metrics["accuracy"] == 1.0 and out.losses["curl"].max() < 1e-3


def test_the_example_suite_is_valid_and_plans_curl_beside_the_builtins(tmp_path, capsys):
    suite = Path(__file__).parents[1] / "suite.yaml"
    assert main(["suite", "run", str(suite), "--out", str(tmp_path / "runs"), "--dry-run"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:5]]
    assert [row[:2] for row in rows] == [
        ["curl-dmc_cartpole-balance-s0", "curl"],
        ["reconstruction-dmc_cartpole-balance-s0", "reconstruction"],
        ["contrastive-dmc_cartpole-balance-s0", "contrastive"],
        ["curl-half-dmc_cartpole-balance-s0", "curl-half"],
    ]
    assert not (tmp_path / "runs").exists()
