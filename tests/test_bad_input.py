"""Bad input to ``wmbench train``: one clear ``wmbench: error:`` line naming the fix, exit 2, no
compute."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_run_dict
from wmbench.cli import main
from wmbench.envs import gl
from wmbench.objectives import available
from wmbench.rundir import CHECKPOINT, RUN_FORMAT

RUN_ID = "reward-toy_reach-s0"


def run_dir_with(
    tmp_path: Path, checkpoint_format: int | None = None, status: str = "running"
) -> Path:
    """A run directory as a killed or finished run leaves it (config.yaml, status.json, maybe a
    checkpoint)."""
    run_dir = tmp_path / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(tiny_run_dict()))
    (run_dir / "status.json").write_text(json.dumps({"status": status}))
    if checkpoint_format is not None:
        (run_dir / CHECKPOINT).parent.mkdir()
        old = (
            {"state_dict": {}}
            if checkpoint_format == 1
            else {"state_dict": {}, "wmbench_format": checkpoint_format}
        )
        torch.save(old, run_dir / CHECKPOINT)
    return run_dir


def train_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--objective",
        "reward",
        "--task",
        "toy:reach",
        "--out",
        str(tmp_path / "runs"),
        *extra,
    ]


CASES = {
    "malformed YAML": (
        lambda tmp: (
            (tmp / "bad.yaml").write_text("train: {env_frames: 10\n")
            and train_args(tmp, "--config", str(tmp / "bad.yaml"))
        ),
        "bad.yaml: YAML syntax error at line 2",
    ),
    "unknown key": (
        lambda tmp: train_args(tmp, "--set", "train.env_frame=10"),
        "unknown key 'env_frame'; did you mean 'env_frames'?",
    ),
    "wrong type": (
        lambda tmp: train_args(tmp, "--set", "train.batch_size=big"),
        "config.train.batch_size: expected int, got 'big' (str)",
    ),
    "unknown objective": (
        lambda tmp: train_args(tmp, "--objective", "nope"),
        f"unknown objective 'nope'; available: {', '.join(sorted(available()))} (third-party "
        "objectives register an entry point in group 'wmbench.objectives')",
    ),
    "unknown task": (
        lambda tmp: train_args(tmp, "--task", "toy:nope"),
        "Unknown toy task 'toy:nope'. Valid toy tasks: toy:reach.",
    ),
    "image size the encoder cannot take": (
        lambda tmp: train_args(tmp, "--set", "env.image_size=32"),
        "set env.image_size=64",
    ),
    "replay chunk above the capacity": (
        lambda tmp: train_args(
            tmp, "--set", "train.replay_capacity=100", "--set", "train.replay_chunk=500"
        ),
        "set train.replay_chunk <= 100",
    ),
    "several actors in sync mode": (
        lambda tmp: train_args(tmp, "--set", "train.actors=2"),
        "train.actors=2 needs train.mode=async (sync mode steps one env)",
    ),
    "--mode with --resume": (
        lambda tmp: ["train", "--resume", str(run_dir_with(tmp)), "--mode", "async"],
        "drop --mode",
    ),
    "missing renderer": (
        lambda tmp: train_args(tmp, "--task", "dmc:cartpole-balance"),
        "MUJOCO_GL='bogus' is not a MuJoCo rendering backend; use one of",
    ),
    "run directory of an incompatible version": (
        lambda tmp: ["train", "--resume", str(run_dir_with(tmp, checkpoint_format=1))],
        "was written by another wmbench version (run format 1, this wmbench 0.1.0 reads format "
        f"{RUN_FORMAT}) and cannot be resumed; delete it to start the run over",
    ),
    "resume of a directory that holds no run": (
        lambda tmp: (tmp / "empty").mkdir() or ["train", "--resume", str(tmp / "empty")],
        "is not a run directory (no config.yaml)",
    ),
    "resume with other options": (
        lambda tmp: [
            "train",
            "--resume",
            str(run_dir_with(tmp, RUN_FORMAT)),
            "--seed",
            "1",
            "--set",
            "seed=2",
        ],
        "--resume continues RUN_DIR with its own config.yaml; drop --set, --seed",
    ),
    "cuda asked for where no GPU is usable": (
        lambda tmp: train_args(tmp, "--set", "train.accelerator=cuda"),
        "train.accelerator=cuda, but ",
    ),
    "tf32 on the CPU": (
        lambda tmp: train_args(tmp, "--set", "train.accelerator=cpu", "--set",
                               "train.precision=tf32"),
        "train.precision=tf32 is a CUDA precision",
    ),
    "CUDA graphs on the CPU": (
        lambda tmp: train_args(tmp, "--set", "train.accelerator=cpu", "--set", "train.compile=true",
                               "--set", "train.compile_mode=reduce-overhead"),
        "train.compile_mode=reduce-overhead captures CUDA graphs and needs CUDA",
    ),
    "parallel envs in async mode": (
        lambda tmp: train_args(tmp, "--mode", "async", "--set", "train.envs=2"),
        "train.envs=2 is sync mode's; in async mode each of train.actors steps one env",
    ),
    "unfinished run with a checkpoint, without --resume": (
        lambda tmp: (
            run_dir_with(tmp, RUN_FORMAT)
            and train_args(tmp, "--config", str(tmp / "runs" / RUN_ID / "config.yaml"))
        ),
        f"{RUN_ID} holds an unfinished run with a checkpoint; continue it with `wmbench train "
        "--resume ",
    ),
    "resume of a finished run": (
        lambda tmp: ["train", "--resume", str(run_dir_with(tmp, RUN_FORMAT, status="done"))],
        "holds a finished run; choose another --out or delete it",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_error_before_compute(case, tmp_path, monkeypatch, capsys):
    make_args, message = CASES[case]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without GPU
    monkeypatch.setenv(
        "MUJOCO_GL", "bogus"
    )  # only the dm_control case gets as far as choosing a renderer
    gl.ensure_mujoco_gl.cache_clear()
    try:
        code = main(make_args(tmp_path))
    finally:
        gl.ensure_mujoco_gl.cache_clear()
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("wmbench: error: ") and err.count("\n") == 1
    assert message in err
    assert not list(tmp_path.rglob("metrics.csv")) and not list(tmp_path.rglob("replay"))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "osmesa"},
         "MUJOCO_GL=egl but PYOPENGL_PLATFORM=osmesa: they must name the same backend; "
         "set PYOPENGL_PLATFORM=egl or unset it"),
        ({"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "egl"},
         "MUJOCO_GL=osmesa but PYOPENGL_PLATFORM=egl"),
        ({"MUJOCO_GL": "egl", "MUJOCO_EGL_DEVICE_ID": "99"},
         "set MUJOCO_EGL_DEVICE_ID to an EGL device of this machine, or unset it"),
    ],
    ids=["egl-osmesa", "osmesa-egl", "no-such-egl-device"],
)
def test_gl_settings_that_cannot_work_get_one_clear_error(settings, message, tmp_path, monkeypatch,
                                                         capsys):
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    gl.ensure_mujoco_gl.cache_clear()
    try:
        code = main(train_args(tmp_path, "--task", "dmc:cartpole-balance"))
    finally:
        gl.ensure_mujoco_gl.cache_clear()
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("wmbench: error: ") and err.count("\n") == 1, err
    assert message in err


def test_an_out_directory_that_is_a_file_gets_one_clear_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("")
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0]\n")
    for args, flag in [
        (train_args(tmp_path)[:-2] + ["--out", str(tmp_path / "notes.txt")], "--out"),
        (["suite", "run", str(suite), "--out", str(tmp_path / "notes.txt")], "--out"),
        (["report", str(tmp_path), "-o", str(tmp_path / "notes.txt" / "report")], "-o/--out"),
    ]:
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1
        assert err.startswith(f"wmbench: error: cannot write in {tmp_path / 'notes.txt'}")
        assert f"give {flag} a directory you can write to" in err


def test_a_read_only_out_directory_gets_one_clear_error(tmp_path, monkeypatch, capsys):
    """Root writes into a chmod 555 directory, so the read-only file system is simulated."""

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(train_args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wmbench: error: cannot write in {tmp_path / 'runs' / RUN_ID}: "
                          "Read-only file system") and err.count("\n") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only (555) directory")
def test_a_directory_without_write_permission_gets_one_clear_error(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main(train_args(tmp_path)[:-2] + ["--out", str(locked)]) == 2
    assert "Permission denied" in capsys.readouterr().err
