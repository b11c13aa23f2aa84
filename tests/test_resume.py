"""Runs that survive: exact resume, kill -9, torn checkpoint writes, the NaN guard and determinism.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger

import wmbench
from conftest import crash_at_update, tiny_run_dict
from wmbench.agents.module import DreamerModule, NonFiniteLossError
from wmbench.cli import main
from wmbench.configio import from_dict
from wmbench.data.replay_disk import ReplayDisk
from wmbench.envs.toy import EPISODE_STEPS
from wmbench.errors import RunInterrupted
from wmbench.objectives.base import ObjectiveOutput
from wmbench.objectives.reward import RewardObjective
from wmbench.run_config import RunConfig
from wmbench.rundir import CHECKPOINT
from wmbench.runtime.checkpoint import AtomicCheckpointIO
from wmbench.runtime.train import continue_csv, train
from wmbench.suite.runner import run_suite


def tiny_config(seed: int = 0, **train_options) -> RunConfig:
    data = tiny_run_dict(seed=seed)
    data["train"].update(train_options)
    return from_dict(RunConfig, data)


def load(run_dir: Path) -> dict:
    return torch.load(run_dir / CHECKPOINT, weights_only=False)


def metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns="wall_time")


def test_resume_gives_the_parameters_and_metrics_of_a_straight_run(tmp_path, monkeypatch):
    """20 updates straight vs 10, crash, resume, 10 more (toy:reach, one update per env frame)."""
    cfg = tiny_config(
        env_frames=28, checkpoint_every=1, replay_chunk=4
    )  # 8 prefill frames, then 20 updates
    straight = train(cfg, tmp_path / "straight")
    with monkeypatch.context() as patch:
        crash_at_update(patch, 10)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(cfg, tmp_path / "resumed")
    assert json.loads((tmp_path / "resumed" / "status.json").read_text())["status"] == "failed"
    assert load(tmp_path / "resumed")["wmbench_updates"] == 10
    resumed = train(cfg, tmp_path / "resumed", resume=True)

    for key in ("env_frames", "agent_steps", "updates", "replay_rows", "eval_return"):
        assert resumed[key] == straight[key]
    assert (straight["updates"], straight["env_frames"], straight["replay_rows"]) == (20, 28, 29)
    a, b = load(tmp_path / "straight"), load(tmp_path / "resumed")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert any(".slow_critic." in k for k in a["state_dict"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for param, state in opt_a["state"].items():
            assert torch.equal(state["exp_avg_sq"], opt_b["state"][param]["exp_avg_sq"])
    pd.testing.assert_frame_equal(metrics(tmp_path / "straight"), metrics(tmp_path / "resumed"))
    assert (
        metrics(tmp_path / "resumed")["train/loss/world_model"].notna().sum() == 20
    )  # each update once
    disk = ReplayDisk(tmp_path / "resumed" / "replay", 4)
    assert disk.stored_rows() == 29


def test_sigkill_mid_run_resumes_to_the_same_totals_without_losing_replay_rows(
    tmp_path, monkeypatch
):
    frames = (
        150  # 8 random prefill frames, then one update every 2 frames (train_ratio 4 = B·T / 2)
    )
    data = tiny_run_dict()
    # one thread, as the resume in this process (it trains with the count the run started with)
    data["train"].update(env_frames=frames, train_ratio=4, checkpoint_every=30, replay_chunk=8,
                         threads=1)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "runs" / "reward-toy_reach-s0"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(Path(wmbench.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wmbench.cli",
            "train",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "runs"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    disk = ReplayDisk(run_dir / "replay", 8)
    deadline = time.time() + 120
    try:  # kill once a checkpoint exists and a chunk written after it has reached disk
        while True:
            assert process.poll() is None and time.time() < deadline, (
                "the run ended before it could be killed"
            )
            if (run_dir / CHECKPOINT).exists():
                stream = load(run_dir)["callbacks"]["RunCheckpoint"]["stream"]
                if disk.stored_rows() >= stream["replay_rows"][0] + 8:  # the one env's replay
                    break
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before_kill = disk.stored_rows()
    state = load(run_dir)["callbacks"]["RunCheckpoint"]["stream"]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"
    assert 0 < state["counters"]["env_frames"] < frames and before_kill > state["replay_rows"][0]

    after_restore = []
    restore = ReplayDisk.restore
    monkeypatch.setattr(
        ReplayDisk,
        "restore",
        lambda self, *a: (restore(self, *a), after_restore.append(self.stored_rows())),
    )
    assert main(["train", "--resume", str(run_dir)]) == 0
    status = json.loads((run_dir / "status.json").read_text())
    at_end = ReplayDisk(run_dir / "replay", 8).stored_rows()
    print(
        f"replay rows on disk: before kill {before_kill}, after resume {after_restore[0]} "
        f"(checkpoint at {state['counters']['env_frames']} env frames), at end {at_end}; "
        f"env_frames at end {status['env_frames']}"
    )
    # rows written after the checkpoint are collected again
    assert after_restore == state["replay_rows"]
    assert status["status"] == "done" and status["env_frames"] == frames
    resets = -(-frames // EPISODE_STEPS)  # one first row per episode started
    assert at_end == status["replay_rows"] == frames + resets
    logged = pd.read_csv(run_dir / "metrics.csv")
    steps = logged.dropna(subset=["train/loss/world_model"])["step"]
    assert status["updates"] == (frames - 8) // 2 and list(steps) == list(
        range(1, status["updates"] + 1)
    )
    assert list(logged["train/episodes"].dropna()) == [1.0, 2.0, 3.0]  # each episode logged once


def test_torn_checkpoint_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"updates": 1, "weights": torch.arange(1000.0)}, path)

    class DiesMidWrite:
        def __reduce__(self):
            raise KeyboardInterrupt  # the process stops while the new checkpoint is half written

    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"weights": torch.zeros(100_000), "later": DiesMidWrite()}, path)
    torn = path.with_name("last.ckpt.tmp")
    assert torn.stat().st_size > 0  # part of the new checkpoint reached disk
    previous = torch.load(path, weights_only=False)
    assert previous["updates"] == 1 and torch.equal(previous["weights"], torch.arange(1000.0))


def test_an_objective_returning_nan_stops_the_run_naming_update_losses_and_checkpoint(
    tmp_path, monkeypatch, capsys
):
    cfg = tiny_config(env_frames=14, checkpoint_every=1)  # 6 updates; the 4th goes wrong

    def forward(self, inp):
        calls = getattr(self, "calls", 0) + 1
        self.calls = calls
        scale = float("nan") if calls == 4 else 1.0  # 1: its losses pass the objective check
        return ObjectiveOutput(
            losses={"bad": scale * inp.feat.mean(-1)}
        )  # NaN loss and NaN gradients

    monkeypatch.setattr(RewardObjective, "forward", forward)
    monkeypatch.setattr(RewardObjective, "loss_scales", {"bad": 1.0})  # every loss is declared
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg, run_dir)
    checkpoint = f"{run_dir / CHECKPOINT} (update 3, env_frames 12)"
    assert str(err.value) == (
        f"non-finite loss/objective/bad, loss/world_model, grad_norm/world_model at update 4; "
        f"training stopped, last good checkpoint: {checkpoint}"
    )
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["error"] == f"NonFiniteLossError: {err.value}"
    assert (status["updates"], status["last_checkpoint"]) == (4, checkpoint)
    assert status["non_finite"] == [
        "loss/objective/bad",
        "loss/world_model",
        "grad_norm/world_model",
    ]
    good = load(
        run_dir
    )  # the guard stopped before any NaN reached the parameters or the checkpoint
    assert good["wmbench_updates"] == 3
    assert all(torch.isfinite(v).all() for v in good["state_dict"].values())


def test_same_seed_gives_identical_metrics_and_another_seed_different_ones(tmp_path):
    runs = {
        name: train(tiny_config(seed=seed), tmp_path / name)
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    }
    assert runs["a"]["updates"] == runs["c"]["updates"] == 2
    pd.testing.assert_frame_equal(metrics(tmp_path / "a"), metrics(tmp_path / "b"))
    losses = {
        name: metrics(tmp_path / name)["train/loss/world_model"].dropna().tolist() for name in runs
    }
    assert losses["a"] == losses["b"] and losses["a"] != losses["c"]


def test_suite_runner_resumes_an_interrupted_run_from_its_checkpoint(tmp_path, monkeypatch):
    config = {k: v for k, v in tiny_run_dict().items() if k in ("env", "agent", "train")}
    config["train"].update(env_frames=28, checkpoint_every=1)
    suite = {
        "name": "r",
        "objectives": ["reward"],
        "tasks": ["toy:reach"],
        "seeds": [0],
        "config": config,
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    with monkeypatch.context() as patch:
        crash_at_update(patch, 10)
        assert run_suite(path, tmp_path / "runs")[2] == ["reward-toy_reach-s0"]
    run_dir = tmp_path / "runs" / "r" / "reward-toy_reach-s0"
    assert load(run_dir)["wmbench_updates"] == 10

    updates_run = []
    original = DreamerModule.training_step
    monkeypatch.setattr(
        DreamerModule,
        "training_step",
        lambda self, *a: (updates_run.append(1), original(self, *a))[1],
    )
    trained, _, failed = run_suite(path, tmp_path / "runs")
    assert (
        failed == [] and len(updates_run) == 10
    )  # the 10 updates after the checkpoint, not all 20
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["updates"], status["env_frames"]) == ("done", 20, 28)
    assert trained["seeds"].tolist() == [1]


@pytest.mark.parametrize(
    "left_by", ["a killed run", "a resume killed while the CSV writer started"]
)
def test_metrics_continue_after_the_rows_of_the_checkpoint(tmp_path, left_by):
    rows = "a,step\n1.0,1\n2.0,2\n9.0,3\n"  # the checkpoint counted 2 rows; row 3 came after it
    name = "metrics.csv" if left_by == "a killed run" else "metrics.csv.kept"
    (tmp_path / name).write_text(rows if name == "metrics.csv" else "a,step\n1.0,1\n2.0,2\n")
    logger = CSVLogger(save_dir=str(tmp_path), name="", version="")
    continue_csv(logger, rows=2)
    logger.log_metrics({"a": 3.0}, step=3)
    logger.log_metrics({"a": 4.0, "b": 5.0}, step=4)  # a new column rewrites the header, rows kept
    logger.save()
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        "a,b,step",
        "1.0,,1",
        "2.0,,2",
        "3.0,,3",
        "4.0,5.0,4",
    ]
    assert not (tmp_path / "metrics.csv.kept").exists()


def test_resume_restores_the_thread_count_the_run_started_with(tmp_path, monkeypatch):
    """Results depend on torch's thread count; a resumed run (a new process, with torch's default
    count, or a suite worker's) uses the one recorded at the start, as a run never stopped does."""
    cfg = tiny_config(env_frames=16, checkpoint_every=1)  # train.threads 0: the process's count
    assert torch.get_num_threads() == 1  # conftest
    with monkeypatch.context() as patch:
        crash_at_update(patch, 4)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(cfg, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "status.json").read_text())["threads"] == 1
    seen = []
    original = DreamerModule.training_step
    def training_step(self, *args):
        seen.append(torch.get_num_threads())
        return original(self, *args)

    monkeypatch.setattr(DreamerModule, "training_step", training_step)
    torch.set_num_threads(2)
    try:
        train(cfg, tmp_path / "run", resume=True)
    finally:
        torch.set_num_threads(1)
    assert seen and set(seen) == {1}
    assert json.loads((tmp_path / "run" / "status.json").read_text())["threads"] == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_run_with_a_checkpoint_and_the_rerun_resumes_it(
    tmp_path, monkeypatch, capsys, caplog, sig
):
    """Ctrl-C or SIGTERM during update 6: the update ends, a checkpoint is written, the run is
    'interrupted' with exit 128 + signal; `train --resume` continues it to a straight run's end."""
    data = tiny_run_dict()
    data["train"].update(env_frames=28, checkpoint_every=1000)  # no checkpoint but the signal's
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "runs" / "reward-toy_reach-s0"
    original = DreamerModule.training_step

    def training_step(self, batch, batch_idx):
        if self.updates == 5:
            os.kill(os.getpid(), sig)  # handled at once, in this thread: during update 6
        return original(self, batch, batch_idx)

    with monkeypatch.context() as patch:
        patch.setattr(DreamerModule, "training_step", training_step)
        args = ["train", "--config", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "runs")]
        assert main(args) == 128 + sig
    err = capsys.readouterr().err.splitlines()[-1]
    checkpoint = f"{run_dir / CHECKPOINT} (update 6, env_frames 15)"  # batch 7 fetched ahead
    assert err.startswith(f"wmbench: {run_dir} interrupted by {sig.name}, checkpoint {checkpoint}")
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["signal"], status["last_checkpoint"]) == (
        "interrupted", sig.name, checkpoint)
    assert load(run_dir)["wmbench_updates"] == 6

    with caplog.at_level(logging.INFO, logger="wmbench"):
        assert main(["train", "--resume", str(run_dir)]) == 0
    assert f"resuming {run_dir} from update 6, 15 env frames" in caplog.messages
    straight = train(from_dict(RunConfig, data), tmp_path / "straight")
    assert json.loads((run_dir / "status.json").read_text())["updates"] == straight["updates"] == 20
    pd.testing.assert_frame_equal(metrics(tmp_path / "straight"), metrics(run_dir))
    a, b = load(tmp_path / "straight")["state_dict"], load(run_dir)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_suite_stopped_by_sigterm_resumes_its_run_when_run_again(tmp_path, monkeypatch):
    config = {k: v for k, v in tiny_run_dict().items() if k in ("env", "agent", "train")}
    config["train"].update(env_frames=28, checkpoint_every=1000)
    suite = {"name": "r", "objectives": ["reward"], "tasks": ["toy:reach"], "seeds": [0],
             "config": config}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    updates_run = []
    original = DreamerModule.training_step

    def training_step(self, batch, batch_idx):
        updates_run.append(self.updates + 1)
        if self.updates == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(DreamerModule, "training_step", training_step)
    with pytest.raises(RunInterrupted) as stopped:
        run_suite(path, tmp_path / "runs")
    assert stopped.value.exit_code == 143
    run_dir = tmp_path / "runs" / "r" / "reward-toy_reach-s0"
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
    *_, failed = run_suite(path, tmp_path / "runs")  # the signal is sent at update 6 only
    assert failed == [] and updates_run == list(range(1, 7)) + list(range(7, 21))
    assert json.loads((run_dir / "status.json").read_text())["updates"] == 20


def test_metrics_csv_grows_while_the_run_trains(tmp_path, monkeypatch):
    """Rows reach metrics.csv as they are logged, not only at checkpoints or at the end."""
    cfg = tiny_config(env_frames=20, checkpoint_every=1000)
    rows_seen = []
    original = DreamerModule.training_step

    def training_step(self, batch, batch_idx):
        path = tmp_path / "run" / "metrics.csv"
        rows_seen.append(len(pd.read_csv(path)) if path.exists() else 0)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(DreamerModule, "training_step", training_step)
    train(cfg, tmp_path / "run")
    # the evaluation at 0 frames and one row per update before (log_every 1)
    assert rows_seen[:4] == [1, 2, 3, 4]


def test_a_run_shows_no_lightning_warnings(tmp_path):
    """wmbench's own choices (num_workers=0, config.yaml in the log directory) are no news."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(tiny_config(), tmp_path / "run")
    assert [str(w.message) for w in caught if "lightning" in w.filename] == []
