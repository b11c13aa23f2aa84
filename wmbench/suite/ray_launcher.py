"""Runs of a suite as Ray tasks: ``wmbench suite run FILE --launcher ray`` (extra ``wmbench[ray]``).

Each run is one Ray task that reserves ``train.threads`` CPUs (1 when the config leaves it at 0)
and trains with that many torch threads, and with ``--gpus-per-run F`` a share ``F`` of a GPU
(``wmbench.suite.gpus.ray_resources``; Ray sets the task's ``CUDA_VISIBLE_DEVICES``). Tasks go to
the cluster at ``address`` (what ``ray.init(address=...)`` accepts, e.g. ``auto`` or
``ray://head:10001``), or to a local Ray instance started for the suite and shut down after it. The
tasks write their run directories themselves, so on a cluster the suite's ``--out`` must be a
filesystem that every node shares.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from wmbench.configio import ConfigError
from wmbench.rundir import mark_failed, read_status
from wmbench.suite.gpus import ray_resources
from wmbench.suite.spec import Run
from wmbench.suite.worker import run_one


def run_on_ray(todo: list[Run], suite_dir: Path, address: str | None, statuses: dict[str, str],
               finished: Callable[[str, str | None], None],
               gpus_per_run: float | None = None) -> None:
    """Run ``todo`` as Ray tasks; call ``finished(run_id, error)`` as each ends (``error`` None on
    success). Each task reserves ``ray_resources(run.config, gpus_per_run)``.

    ``statuses`` (run id to status) is kept current for the progress line: an unfinished run counts
    as running once its ``status.json`` says so.

    Raises:
        ConfigError: Ray is not installed (names the extra to install).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--launcher ray needs Ray; install it with: pip install 'wmbench[ray]'"
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    try:
        task = ray.remote(run_one)
        pending = {}
        for run in todo:
            resources = ray_resources(run.config, gpus_per_run)
            ref = task.options(**resources).remote(
                run, suite_dir / run.run_id, int(resources["num_cpus"])
            )
            pending[ref] = run.run_id
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            run_id = pending.pop(ref)
            try:
                error = ray.get(ref)
            except ray.exceptions.RayError as err:  # the worker died or the task could not run
                error = f"{type(err).__name__}: {err}"
                mark_failed(suite_dir / run_id, error)
            for other in pending.values():
                statuses[other] = (
                    "running"
                    if read_status(suite_dir / other).get("status") == "running"
                    else "pending"
                )
            finished(run_id, error)
    finally:
        if started_here:
            ray.shutdown()
