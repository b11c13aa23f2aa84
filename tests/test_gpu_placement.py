"""The suite runner's GPU placement (``--gpus-per-run``), without a GPU: the devices each local
worker sees and what each Ray task reserves."""

from __future__ import annotations

import json
import re

import pytest

from conftest import tiny_run_dict
from test_suite import TINY_CONFIG, write
from wmbench.cli import main
from wmbench.configio import ConfigError, from_dict
from wmbench.run_config import RunConfig
from wmbench.suite.gpus import ray_resources, runs_per_gpu, visible_gpus, worker_devices


def test_visible_gpus_are_cuda_visible_devices_or_all_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 5"}, lambda: 8) == ["2", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, lambda: 8) == []
    assert visible_gpus({}, lambda: 3) == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("gpus", "workers", "share", "expected"),
    [
        (["0", "1"], 2, 1.0, ["0", "1"]),
        (["0", "1"], 4, 0.5, ["0", "0", "1", "1"]),
        (["0", "1"], 8, 0.25, ["0"] * 4 + ["1"] * 4),
        (["0", "1"], 3, 0.25, ["0", "0", "0"]),  # fills the first GPU first
        (["4", "6"], 3, 0.3, ["4", "4", "4"]),  # 1 / 0.3: three runs per GPU
        (["3"], 1, 1 / 3, ["3"]),
    ],
)
def test_workers_fill_the_visible_gpus_in_order(gpus, workers, share, expected):
    assert worker_devices(gpus, workers, share) == expected


@pytest.mark.parametrize(
    ("gpus", "workers", "share", "message"),
    [
        (["0"], 3, 0.5, "--workers 3 at --gpus-per-run 0.5 needs 2 GPUs, and 1 are visible: use "
                        "at most --workers 2"),
        ([], 1, 1.0, "--gpus-per-run needs GPUs, and none is visible"),
        (["0", "1"], 1, 2.0, "--gpus-per-run=2.0: a run trains on one GPU"),
        (["0"], 1, 0.0, "give a share of one in (0, 1]"),
    ],
)
def test_a_placement_that_cannot_work_names_the_fix(gpus, workers, share, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        worker_devices(gpus, workers, share)


def test_a_ray_task_reserves_its_threads_and_its_share_of_a_gpu():
    cfg = from_dict(RunConfig, tiny_run_dict())
    assert ray_resources(cfg, 0.25) == {"num_cpus": 1, "num_gpus": 0.25}
    data = tiny_run_dict()
    data["train"]["threads"] = 4
    assert ray_resources(from_dict(RunConfig, data), None) == {"num_cpus": 4, "num_gpus": 0}
    assert runs_per_gpu(0.25) == 4 and runs_per_gpu(1.0) == 1
    with pytest.raises(ConfigError, match="a run trains on one GPU"):
        ray_resources(cfg, 1.5)


def test_each_local_worker_sees_its_own_gpu(tmp_path, monkeypatch):
    """Two workers, one run each, on "GPUs" 3 and 5 (this CPU machine trains on the CPU; each run
    records the CUDA_VISIBLE_DEVICES its worker set)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    path = write(
        tmp_path, "name: g\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0, 1]\n" + TINY_CONFIG
    )
    args = ["suite", "run", str(path), "--out", str(tmp_path / "runs"), "--workers", "2"]
    assert main([*args, "--gpus-per-run", "1"]) == 0
    seen = {
        json.loads((tmp_path / "runs" / "g" / f"reward-toy_reach-s{seed}" / "status.json")
                   .read_text())["device"]["cuda_visible_devices"]
        for seed in (0, 1)
    }
    assert seen == {"3", "5"}
    assert main([*args, "--workers", "3", "--gpus-per-run", "1"]) == 2  # 3 workers, 2 GPUs
