"""Where a run computes: the accelerator and precision rules, the device's record, and a run that
resumes on another placement. (A ``cuda`` run asked for without a GPU: ``test_bad_input``.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import crash_at_update, tiny_run_dict
from wmbench.cli import main
from wmbench.configio import ConfigError, from_dict, load_yaml
from wmbench.run_config import RunConfig, TrainConfig
from wmbench.rundir import describe_device
from wmbench.runtime import device
from wmbench.runtime.train import train


@pytest.fixture
def gpu(monkeypatch):
    """torch as it answers on a machine with one bf16-capable GPU (nothing is computed on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.version, "cuda", "13.0")


def test_auto_is_cuda_with_bf16_where_a_gpu_is_usable_and_the_trainer_follows(gpu):
    placement = device.resolve(TrainConfig())
    assert (placement.accelerator, placement.precision, placement.compile) == (
        "cuda", "bf16-mixed", None)
    assert placement.device == torch.device("cuda", 0)
    assert placement.trainer_options() == {
        "accelerator": "cuda", "devices": 1, "precision": "bf16-mixed", "deterministic": False,
        "benchmark": True,
    }
    tf32 = device.resolve(TrainConfig(precision="tf32"))
    assert tf32.trainer_options()["precision"] == "32-true"  # TF32 is Placement.apply's switch
    assert device.resolve(TrainConfig(accelerator="cpu")).accelerator == "cpu"


def test_auto_on_the_cpu_is_fp32_and_a_resumed_run_keeps_its_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    placement = device.resolve(TrainConfig())
    assert placement.accelerator == "cpu"
    assert placement.precision == "32-true"  # also where bf16 is faster (reports/speed.md)
    assert placement.trainer_options()["deterministic"] is True
    assert device.resolve(TrainConfig(precision="bf16-mixed")).precision == "bf16-mixed"
    assert device.resolve(TrainConfig(), recorded_precision="bf16-mixed").precision == "bf16-mixed"
    assert device.resolve(TrainConfig(precision="32-true"), "bf16-mixed").precision == "32-true"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compile_mode": "reduce-overhead"}, "train.compile_mode=reduce-overhead needs "
         "train.compile=true"),
        ({"compile": True, "compile_mode": "reduce-overhead", "accelerator": "cpu"},
         "captures CUDA graphs and needs CUDA"),
        ({"compile": True, "accelerator": "cpu"}, "compiling for the CPU needs a C++ compiler"),
    ],
)
def test_settings_this_machine_cannot_follow_name_the_fix(monkeypatch, options, message):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(device.shutil, "which", lambda name: None)  # no C++ compiler
    with pytest.raises(ConfigError, match=re.escape(message)):
        device.resolve(TrainConfig(**options))


def test_tf32_is_switched_on_for_cuda_runs_only_and_restored():
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    restore = device.Placement("cpu", "32-true").apply()
    assert torch.get_float32_matmul_precision() == "highest"
    restore()
    restore = device.Placement("cuda", "bf16-mixed").apply()
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
    restore()
    # strict fp32 on CUDA: cuDNN's convolutions too (torch leaves their TF32 on by default)
    restore = device.Placement("cuda", "32-true").apply()
    assert torch.get_float32_matmul_precision() == "highest"
    assert not torch.backends.cudnn.allow_tf32
    restore()
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before


def test_auto_trains_on_the_cpu_here_and_every_record_says_so(tmp_path):
    cfg = from_dict(RunConfig, tiny_run_dict())
    assert cfg.train.accelerator == "auto"
    train(cfg, tmp_path / "run")
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    record = status["device"]
    assert record["accelerator"] == "cpu" and record["name"] == device.cpu_name()
    assert record["precision"] in ("32-true", "bf16-mixed") and record["compile"] is None
    assert record["torch"] == torch.__version__
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert text.startswith(f"# device: {describe_device(record)}\n")
    assert from_dict(RunConfig, load_yaml(tmp_path / "run" / "config.yaml")) == cfg  # a --config
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["wmbench_device"] == record


def test_a_run_resumes_on_another_accelerator_setting_to_the_same_end(tmp_path, monkeypatch):
    """A run started with ``accelerator: auto`` and compiled-off is resumed with ``--set
    train.accelerator=cpu`` (as a GPU run is resumed on a CPU machine): same parameters and
    metrics as a run never stopped."""
    data = tiny_run_dict()
    data["train"].update(env_frames=16, checkpoint_every=1)
    cfg = from_dict(RunConfig, data)
    train(cfg, tmp_path / "straight")
    run_dir = tmp_path / "runs" / "reward-toy_reach-s0"
    with monkeypatch.context() as patch:
        crash_at_update(patch, 4)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(cfg, run_dir)
    assert main(["train", "--resume", str(run_dir), "--set", "train.accelerator=cpu"]) == 0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["accelerator"] == "cpu"
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=False)
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key

    def metrics(path: Path) -> pd.DataFrame:
        return pd.read_csv(path / "metrics.csv").drop(columns="wall_time")

    pd.testing.assert_frame_equal(metrics(tmp_path / "straight"), metrics(run_dir))
