"""The run directory: its names, its format version, its status file, and whole-or-absent writes.

One run directory (``runs/train/<run_id>`` or ``runs/<suite>/<run_id>``) holds::

    config.yaml            the resolved RunConfig (CONFIG)
    status.json            {"status": one of STATUSES, ...} (STATUS; read/write_status)
    metrics.csv            every logged row, with env_frames and wall_time (METRICS)
    replay/                the replay's rows as chunk files (REPLAY; wmbench.data.replay_disk)
    checkpoints/last.ckpt  the whole state of the run (CHECKPOINT; wmbench.runtime.checkpoint)
    diagnostics/           what ``wmbench diagnose`` writes (DIAGNOSTICS)

This module is the only owner of these names; it imports no torch, so the report, the suite planner
and the command line read run directories cheaply.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from wmbench.configio import ConfigError, from_dict, load_yaml
from wmbench.run_config import RunConfig

RUN_FORMAT = 3
"""Format of a run directory's checkpoint and replay chunks; another format is not resumed.

1: before resume existed; 2: the first resumable format; 3: one train-ratio schedule (the stream
counts the batches it handed out instead of carrying a credit)."""

CONFIG = "config.yaml"
STATUS = "status.json"
METRICS = "metrics.csv"
REPLAY = "replay"
CHECKPOINT = Path("checkpoints") / "last.ckpt"
"""The checkpoint's path inside a run directory."""
DIAGNOSTICS = "diagnostics"
"""Folder of a run directory that ``wmbench diagnose`` writes."""

STATUSES = ("running", "done", "failed", "interrupted")
"""``running`` (or killed while running), ``done`` with the run's summary, ``failed`` with the
error, ``interrupted`` by SIGINT/SIGTERM with its checkpoint (see ``wmbench.runtime.signals``)."""

BASELINES = ("zero", "random")
"""The trivial policies every suite evaluates, as the ``objective`` of their runs' ``config.yaml``:
``zero`` takes action 0 in every dimension, ``random`` uniform random actions. No suite may use
these names, nor ``UNTRAINED``."""

UNTRAINED = "untrained"
"""The report's label of the untrained agent: the runs' own evaluation at 0 env frames."""


def run_id(objective: str, task: str, seed: int) -> str:
    """Directory name of a run, e.g. ``reconstruction-dmc_cartpole-balance-s0``.

    Characters of the task name other than letters, digits, ``.``, ``_`` and ``-`` become ``_``
    (``dmc:walker-walk?background=video`` gives ``dmc_walker-walk_background_video``).
    """
    return f"{objective}-{re.sub(r'[^A-Za-z0-9_.-]', '_', task)}-s{seed}"


def read_config(run_dir: str | os.PathLike) -> RunConfig:
    """The run's ``config.yaml``.

    Raises:
        ConfigError: ``run_dir`` has no ``config.yaml`` (not a run directory), or it is invalid.
    """
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} is not a run directory (no {CONFIG}); give the directory of one run, "
            "e.g. runs/train/<run_id> or runs/<suite>/<run_id>"
        )
    return from_dict(RunConfig, load_yaml(path), where=str(path))


def read_status(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``status.json`` of a run (``{"status": "done" | "failed" | ...}``), or ``{}`` if absent."""
    path = Path(run_dir) / STATUS
    return json.loads(path.read_text()) if path.exists() else {}


def write_status(run_dir: str | os.PathLike, status: str, **info: Any) -> None:
    """Writes ``run_dir/status.json`` atomically: ``{"status": status, **info}``."""
    text = json.dumps({"status": status, **info}, indent=2)
    atomic_write(Path(run_dir) / STATUS, lambda f: f.write(text.encode()))


def make_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Creates the directory ``path`` (and its parents) and checks that files can be written in it.

    Args:
        path: the directory.
        option: the command-line option that chose it, named in the error.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ConfigError: ``path`` or a parent is a file, or the directory cannot be written (read-only
            file system, no permission); the message names the path and the fix.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".wmbench-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"cannot write in {path}: {err.strerror} ({err.filename or path}); give {option} a "
            "directory you can write to"
        ) from None
    return path


def mark_failed(run_dir: str | os.PathLike, error: str) -> None:
    """Records a run whose process died (it could not write its own ``failed`` status)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_status(run_dir, "failed", error=error)


def metric_rows(path: str | os.PathLike) -> int:
    """Number of data rows of a CSV file such as ``metrics.csv`` (0 if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        return max(0, sum(1 for _ in f) - 1)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Writes ``path`` by calling ``write(file)`` on ``<path>.tmp``, fsync, then rename over
    ``path``.

    A kill during the write leaves the previous ``path`` (if any) in place and a stray ``.tmp``.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
