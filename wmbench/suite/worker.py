"""One run of a suite, as the local process pool and Ray tasks run it."""

from __future__ import annotations

from pathlib import Path

import torch

from wmbench.runtime.train import quiet_libraries, train
from wmbench.suite.spec import Run


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
