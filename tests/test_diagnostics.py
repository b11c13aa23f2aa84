"""Representation diagnostics: ridge probe, probe decoder, open-loop errors and `wmbench diagnose`.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_run_dict, tiny_wm_config
from wmbench.agents.world_model import WorldModel
from wmbench.cli import main
from wmbench.configio import ConfigError, from_dict
from wmbench.diagnostics import episodes as ep
from wmbench.diagnostics import open_loop
from wmbench.diagnostics.config import PROBES, DiagnoseConfig
from wmbench.diagnostics.probe import RidgeProbe, select_alpha
from wmbench.diagnostics.probe_decoder import train_probe_decoder
from wmbench.diagnostics.run import load_run
from wmbench.envs import DMCEnv, make_env
from wmbench.objectives.reconstruction import ReconstructionConfig, ReconstructionObjective
from wmbench.objectives.reward import RewardObjective
from wmbench.report.diagnostics import diagnostics_section
from wmbench.report.store import run_table
from wmbench.run_config import RunConfig
from wmbench.rundir import CHECKPOINT
from wmbench.runtime.train import baseline, train


def test_probe_recovers_a_linear_map_and_scores_noise_near_zero():
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(2000, 10)), rng.normal(size=(1000, 10))
    weight, bias = rng.normal(size=(10, 3)), np.array([5.0, -2.0, 0.5])
    probe = RidgeProbe.fit(x_train, x_train @ weight + bias, alpha=1e-3)
    r2, overall = probe.r2(x_test, x_test @ weight + bias)
    assert r2.shape == (3,) and r2.min() > 0.9999 and overall > 0.9999
    noise, overall = RidgeProbe.fit(x_train, rng.normal(size=(2000, 2)), alpha=1.0).r2(
        x_test, rng.normal(size=(1000, 2))
    )
    assert np.abs(noise).max() < 0.02 and abs(overall) < 0.02


def test_r2_baseline_is_the_training_mean():
    x = np.random.default_rng(3).normal(size=(100, 5))
    probe = RidgeProbe.fit(
        x, np.zeros((100, 1)) + x[:, :1], alpha=1e9
    )  # so strong a penalty it predicts the mean
    y_test = x[:50, :1] + 3.0  # held out: shifted away from the training mean
    r2, overall = probe.r2(x[:50], y_test)
    assert abs(overall) < 1e-3 and abs(r2[0]) < 1e-3


def test_alpha_selection_prefers_little_penalty_for_signal_and_much_for_noise():
    rng = np.random.default_rng(2)
    x, groups = rng.normal(size=(300, 40)), np.repeat(np.arange(3), 100)
    alphas = (0.01, 1.0, 1e4)
    alpha, scores = select_alpha(x, x[:, :3] * 2.0, groups, alphas)
    assert alpha == 0.01 and scores[0] > 0.999 and len(scores) == 3
    alpha, scores = select_alpha(x, rng.normal(size=(300, 2)), groups, alphas)
    assert alpha == 1e4 and abs(scores[2]) < 0.05 and scores[0] < scores[2]
    with pytest.raises(ValueError, match=">= 2 groups"):
        select_alpha(x, x, np.zeros(300), alphas)


def test_r2_is_nan_for_constant_dims_and_the_overall_pools_the_others():
    x = np.random.default_rng(1).normal(size=(50, 4))
    y = np.stack([x[:, 0], np.ones(50), x[:, 1] + np.random.default_rng(2).normal(size=50)], 1)
    probe = RidgeProbe.fit(x, y, alpha=1e-6)
    r2, overall = probe.r2(x, y)
    assert np.isnan(r2[1]) and r2[0] == pytest.approx(1.0, abs=1e-9) and 0.3 < r2[2] < 0.8
    target = probe.standardise(y)[:, [0, 2]]  # pooled: 1 - (SSE_0 + SSE_2) / (SST_0 + SST_2)
    sse = ((target - probe.predict(x)[:, [0, 2]]) ** 2).sum()
    assert overall == pytest.approx(
        1 - sse / (target**2).sum()
    )  # target is centred on the training mean
    with pytest.raises(ValueError, match="same N"):
        RidgeProbe.fit(x, y[:10])


def test_split_holds_out_whole_episodes():
    episodes = [
        ep.Episode(
            np.zeros((3, 3, 64, 64), np.uint8),
            np.zeros((3, 2), np.float32),
            np.zeros(3, np.float32),
            np.full((3, 2), float(i)),
        )
        for i in range(4)
    ]
    train_eps, test_eps = ep.split(episodes, 1)
    assert [e.state[0, 0] for e in train_eps] == [0.0, 1.0, 2.0] and [
        e.state[0, 0] for e in test_eps
    ] == [3.0]
    with pytest.raises(ValueError, match="raise --episodes"):
        ep.split(episodes, 4)


def _world_model(objective=RewardObjective, config=None) -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(tiny_wm_config(), (3, 64, 64), 2, objective, config or objective.Config())


def test_probe_decoder_training_leaves_the_world_model_bitwise_unchanged():
    wm = _world_model()
    before = {k: v.clone() for k, v in wm.state_dict().items()}
    image = torch.full((1, 12, 3, 64, 64), 230, dtype=torch.uint8)  # learnable: one colour
    is_first = torch.zeros(1, 12, dtype=torch.bool)
    is_first[:, 0] = True
    post, _ = wm.rssm.observe(
        wm.encoder(image), torch.zeros(1, 12, 2), is_first
    )  # with gradient tracking
    feat = wm.rssm.feat(post)[0]
    assert feat.requires_grad
    decoder, losses = train_probe_decoder(feat, image[0], depth=4, steps=30, batch_size=8, lr=3e-3)
    assert all(torch.equal(before[k], v) for k, v in wm.state_dict().items())
    assert all(p.grad is None for p in wm.parameters())
    assert len(losses) == 30 and np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert not any(p is q for p in decoder.parameters() for q in wm.parameters())


def _episodes(lengths: list[int], state_dim: int = 3) -> list[ep.Episode]:
    rng = np.random.default_rng(0)
    return [
        ep.Episode(
            rng.integers(0, 256, (n, 3, 64, 64), dtype=np.uint8),
            rng.uniform(-1, 1, (n, 2)).astype(np.float32),
            rng.normal(size=n).astype(np.float32),
            rng.normal(size=(n, state_dim)),
        )
        for n in lengths
    ]


@pytest.mark.parametrize("with_decoder", [False, True])
def test_open_loop_errors_have_one_value_per_horizon_step(with_decoder):
    objective = ReconstructionObjective if with_decoder else RewardObjective
    wm = _world_model(objective, ReconstructionConfig() if with_decoder else None).eval()
    episodes = _episodes([9, 12, 4])  # windows of 2 + 3 rows: 1 + 2 + 0
    probe = RidgeProbe.fit(
        np.random.default_rng(0).normal(size=(20, 12)),
        np.random.default_rng(1).normal(size=(20, 3)),
    )
    decoder, _ = train_probe_decoder(
        torch.randn(5, 12), torch.zeros(5, 3, 64, 64, dtype=torch.uint8), depth=4, steps=0
    )
    errors, strip, labels = open_loop.evaluate(
        wm, episodes, context=2, horizon=3, probe=probe, probe_decoder=decoder
    )
    assert errors.windows == 3
    for values in (errors.reward, errors.state, errors.image):
        assert values.shape == (3,) and values.dtype == np.float64 and np.isfinite(values).all()
    assert (errors.decoder_image is not None) == with_decoder
    if with_decoder:
        assert errors.decoder_image.shape == (3,)
    assert strip.shape == (2 + with_decoder, 5, 3, 64, 64) and strip.dtype == torch.uint8
    assert torch.equal(strip[0], torch.as_tensor(episodes[0].image[:5]))
    assert labels == ["truth", "probe decoder"] + (["objective's decoder"] if with_decoder else [])


def test_open_loop_needs_a_window_that_fits():
    with pytest.raises(ValueError, match="raise --max-steps"):
        open_loop.windows(_episodes([4]), context=2, horizon=3)


def test_toy_reach_records_its_physics_state():
    env = make_env("toy:reach", action_repeat=1, seed=0)
    episodes = ep.collect(
        env, lambda obs, first: np.ones(2, np.float32), episodes=1, max_steps=3, seed=0
    )
    assert len(episodes[0]) == 4 and episodes[0].state.shape == (4, 4)
    np.testing.assert_allclose(
        episodes[0].state[:, 0], [0.0, 0.15, 0.30, 0.45]
    )  # qpos x moves 0.15 per step
    np.testing.assert_allclose(episodes[0].state[1:, 2], 0.15)  # qvel x: the last displacement


def test_angles_that_wind_become_cosine_and_sine():
    info = {"qpos": np.array([0.5, 2 * np.pi + 0.3]), "qvel": np.array([1.0, -2.0])}
    np.testing.assert_allclose(
        ep.physics_state(info, (1,)), [0.5, np.cos(0.3), np.sin(0.3), 1.0, -2.0]
    )
    assert ep.state_names(info, (1,)) == ["qpos0", "qpos1.cos", "qpos1.sin", "qvel0", "qvel1"]
    np.testing.assert_array_equal(ep.physics_state(info), [0.5, 2 * np.pi + 0.3, 1.0, -2.0])


def test_dmc_unlimited_hinges_are_the_circular_coordinates():
    assert ep.circular_qpos(make_env("dmc:cartpole-balance")) == (
        1,
    )  # the pole; the cart slider is limited
    assert DMCEnv("walker", "walk").unlimited_hinges() == [
        2
    ]  # torso pitch; the leg joints are limited
    assert ep.circular_qpos(make_env("toy:reach")) == ()


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "reconstruction-toy_reach-s0"
    train(from_dict(RunConfig, tiny_run_dict("reconstruction")), run_dir)
    settings = [
        "--episodes",
        "3",
        "--test-episodes",
        "1",
        "--max-steps",
        "12",
        "--context",
        "2",
        "--horizon",
        "4",
        "--decoder-steps",
        "3",
        "--alpha",
        "2.5,2.5",
    ]
    assert main(["diagnose", str(run_dir), *settings]) == 0
    return run_dir


def test_diagnose_writes_results_that_land_in_the_result_store(diagnosed):
    results = json.loads((diagnosed / "diagnostics" / "results.json").read_text())
    assert results["state_names"] == ["qpos0", "qpos1", "qvel0", "qvel1"]
    assert results["rows"] == {"train": 26, "test": 13} and results["open_loop_windows"] == 2
    assert set(results["r2"]) == set(PROBES) and all(
        len(v["per_dim"]) == 4 for v in results["r2"].values()
    )
    assert results["alpha"] == {name: 2.5 for name in PROBES}
    assert all(
        len(results["horizon"][q]) == 4 for q in ("reward", "state", "image", "decoder_image")
    )
    assert (diagnosed / "diagnostics" / "open_loop.png").stat().st_size > 1000
    table = run_table(diagnosed, "tiny")
    rows = table[table.metric.str.startswith("diagnose/")]
    assert len(rows) == 4 + 4 * 4 and set(rows.env_frames) == {10}
    r2 = rows.set_index("metric").value
    assert r2["diagnose/r2/feat"] == pytest.approx(results["r2"]["feat"]["overall"])
    assert r2["diagnose/open_loop/image@4"] == pytest.approx(results["horizon"]["image"][3])
    assert (table.metric == "eval/return").any()  # the run's own metrics are still there


def test_diagnostics_section_renders_table_and_figures(diagnosed, tmp_path):
    def per_task(scores: pd.DataFrame) -> pd.DataFrame:
        grouped = scores.groupby(["task", "objective"])["value"]
        return pd.DataFrame(
            {
                "mean": grouped.mean(),
                "ci_low": grouped.min(),
                "ci_high": grouped.max(),
                "seeds": grouped.count(),
            }
        ).reset_index()

    colour = {"reconstruction": (0.1, 0.2, 0.3)}
    text = diagnostics_section([diagnosed], ["reconstruction"], tmp_path, per_task, colour)
    results = json.loads((diagnosed / "diagnostics" / "results.json").read_text())
    feat = results["r2"]["feat"]["overall"]
    assert text.startswith("## Representation diagnostics")
    assert f"| toy:reach | reconstruction |       1 | {feat:.2f} [{feat:.2f}, {feat:.2f}]" in text
    assert (
        "](diagnostics/reconstruction-toy_reach-s0.png)" in text
        and "](diagnostics/horizon.png)" in text
    )
    assert (tmp_path / "diagnostics" / "horizon.png").exists()
    assert (tmp_path / "diagnostics" / "reconstruction-toy_reach-s0.png").exists()
    assert "No run has diagnostics" in diagnostics_section(
        [tmp_path / "nothing"], ["reconstruction"], tmp_path, per_task, colour
    )


def test_load_run_reads_weights_of_any_run_format(diagnosed, tmp_path):
    run_dir = tmp_path / "old"
    shutil.copytree(diagnosed, run_dir, ignore=shutil.ignore_patterns("replay"))
    checkpoint = torch.load(run_dir / CHECKPOINT, weights_only=False)
    _, new = load_run(run_dir)
    assert (new.updates, new.env_frames) == (2, 10)
    torch.save(
        {"state_dict": checkpoint["state_dict"], "wmbench_updates": 2}, run_dir / CHECKPOINT
    )  # run format 1
    (run_dir / "status.json").write_text(json.dumps({"status": "done", "env_frames": 7}))
    _, old = load_run(run_dir)
    assert old.env_frames == 7 and all(
        torch.equal(old.state_dict[k], v) for k, v in new.state_dict.items()
    )
    (run_dir / CHECKPOINT).unlink()
    with pytest.raises(ConfigError, match="has no checkpoint"):
        load_run(run_dir)


def test_diagnose_refuses_bad_input(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"wmbench: error: {tmp_path} is not a run directory (no config.yaml); give the "
        "directory of one run, e.g. runs/train/<run_id> or runs/<suite>/<run_id>"
    )
    with pytest.raises(ConfigError, match="lower --context/--horizon or raise --max-steps"):
        DiagnoseConfig(max_steps=10, context=5, horizon=15)
    with pytest.raises(ConfigError, match="raise --episodes"):
        DiagnoseConfig(episodes=2, test_episodes=2)


@pytest.mark.parametrize("policy", ["zero", "random"])
def test_diagnose_of_a_baseline_says_what_it_is(tmp_path, capsys, policy):
    run_dir = tmp_path / f"{policy}-toy_reach-s0"
    baseline(from_dict(RunConfig, tiny_run_dict()), run_dir, policy)
    assert main(["diagnose", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wmbench: error: {run_dir} is the {policy} baseline (a fixed policy)")
    assert "--resume" not in err and err.count("\n") == 1
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert f"is the {policy} baseline (a fixed policy): nothing trains" in capsys.readouterr().err
