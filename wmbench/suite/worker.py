"""One run of a suite, as the local process pool and Ray tasks run it."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import torch

from wmbench.runtime.train import quiet_libraries, train
from wmbench.suite.spec import Run


def init_worker(devices: Any = None) -> None:
    """Starts a pool worker: in its own process group (a terminal's Ctrl-C reaches only the suite's
    process, which passes it on once, see ``wmbench.suite.runner``), ignoring SIGINT and SIGTERM
    between runs (``train`` handles them while a run trains).

    Args:
        devices: a queue of ``CUDA_VISIBLE_DEVICES`` values, one per worker
            (``wmbench.suite.gpus.worker_devices``); the worker takes one and keeps it for its
            life. ``None``: the worker sees the suite's GPUs.
    """
    os.setpgrp()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    if devices is not None:  # before this process starts CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = devices.get()


def run_one(run: Run, run_dir: Path, threads: int = 0) -> str | None:
    """Train (or resume) one run; returns ``None`` on success, else the error (already in its
    status.json).

    ``threads`` > 0 sets torch's intra-op threads of this (worker) process unless the run's config
    fixes them.
    """
    quiet_libraries()
    if threads:
        torch.set_num_threads(threads)
    try:
        train(run.config, run_dir, resume=True)
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None
