"""Run a suite: every objective × task × seed in turn, then the result table and comparison.

Output layout::

    <out>/<suite>/<run_id>/        config.yaml, metrics.csv, status.json, checkpoints/
    <out>/<suite>/suite.yaml       copy of the suite file
    <out>/<suite>/results.csv      tidy table (see ``wmbench.report.store``), also results.parquet
    <out>/<suite>/runs.csv         one row per run: status, final return, cost; also runs.parquet
    <out>/<suite>/versions.json    package versions of the process that wrote the store, and each
                                   objective's origin (built-in, or distribution and entry point)
    <out>/<suite>/comparison.md    final evaluation return per objective × task with its 95 % CI,
                                   flagged against the best trivial baseline (zero action, uniform
                                   random, untrained agent; ``wmbench.report.comparison``)
    <out>/<suite>/curves.png       evaluation return against env frames (mean, 95 % CI over seeds)

A finished run (``status.json`` says ``done``) is skipped when the suite is run again; an unfinished
one (killed, interrupted or failed) continues from its checkpoint, or starts over if it has none; a
failing run is recorded as ``failed`` with its error and the others go on. A progress line counts
the runs done, running, failed and pending after each run. ``wmbench report`` turns the store into
the comparison report (``wmbench.report.markdown``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
import torch
import yaml

from wmbench.configio import ConfigError, to_dict
from wmbench.errors import RunInterrupted
from wmbench.objectives.registry import entry
from wmbench.report.comparison import comparison_tables, markdown
from wmbench.report.plots import colours, plot_curves
from wmbench.report.store import collect, run_row, runs_frame, save
from wmbench.rundir import CHECKPOINT, CONFIG, make_dir, mark_failed, read_status, same_run
from wmbench.runtime.checkpoint import read_checkpoint
from wmbench.runtime.device import resolve
from wmbench.runtime.train import baseline
from wmbench.suite.gpus import runs_per_gpu, visible_gpus, worker_devices
from wmbench.suite.plan import progress
from wmbench.suite.spec import Run, baseline_runs, load_suite
from wmbench.suite.worker import init_worker, run_one

log = logging.getLogger("wmbench")

COMPARISON_REPS = 2000
"""Bootstrap resamples of the printed comparison's CIs (as ``wmbench report``'s default)."""


def _check_not_stale(runs: list[Run], suite_dir: Path, path: str | Path) -> None:
    """Refuse to reuse finished or resumable runs whose saved configuration differs from the
    suite's.

    Raises:
        ConfigError: naming the runs and the fix; or a resumable run's checkpoint has another
            run-directory format (see ``wmbench.runtime.checkpoint.read_checkpoint``).
    """
    kept = [
        r
        for r in runs
        if read_status(suite_dir / r.run_id).get("status") == "done"
        or (suite_dir / r.run_id / CHECKPOINT).exists()
    ]
    for r in kept:
        if read_status(suite_dir / r.run_id).get("status") != "done":
            read_checkpoint(suite_dir / r.run_id)
    stale = [
        r.run_id
        for r in kept
        if not same_run(yaml.safe_load((suite_dir / r.run_id / CONFIG).read_text()),
                        to_dict(r.config))
    ]
    if stale:
        raise ConfigError(
            f"{len(stale)} finished or resumable run(s) in {suite_dir} were made with another "
            f"configuration than {path} gives now "
            f"({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}); give the suite a new "
            "name, use another --out, or delete those run directories"
        )


def _run_local(todo: list[Run], suite_dir: Path, workers: int, statuses: dict[str, str],
               finished: Callable[[str, str | None], None],
               devices: list[str] | None = None) -> None:
    """Run ``todo`` in this process (``workers`` 1) or in a pool of ``workers`` spawned processes.

    ``devices`` (``wmbench.suite.gpus.worker_devices``) gives each pool worker its
    ``CUDA_VISIBLE_DEVICES``; in this process a run uses the first visible GPU.

    ``statuses`` (run id to status) is kept current for the progress line; ``finished(run_id,
    error)`` is called as each run ends (``error`` None on success).

    SIGINT or SIGTERM stops the runs in progress with a checkpoint (``wmbench.runtime.signals``)
    and starts no other. The pool's workers have their own process group, so a terminal's Ctrl-C
    reaches this process only, which passes each signal on to them once.

    Raises:
        RunInterrupted: a signal stopped the suite.
    """
    if workers == 1:
        for run in todo:
            statuses[run.run_id] = "running"
            log.info("%s: starting %s", progress(statuses), run.run_id)
            finished(run.run_id, run_one(run, suite_dir / run.run_id))
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        for future in futures:
            future.cancel()  # those not started yet
        for child in multiprocessing.active_children():
            os.kill(child.pid, signum)

    queue = None
    if devices is not None:
        queue = context.Queue()
        for value in devices:
            queue.put(value)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker,
                             initargs=(queue,)) as pool:
        futures = {pool.submit(run_one, r, suite_dir / r.run_id, threads): r.run_id for r in todo}
        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for run_id_ in list(futures.values())[:workers]:
                statuses[run_id_] = "running"
            log.info(progress(statuses))
            for future in as_completed(futures):
                run_id_ = futures[future]
                if future.cancelled():
                    statuses[run_id_] = "pending"
                    continue
                try:
                    error = future.result()
                except RunInterrupted as err:
                    statuses[run_id_] = "interrupted"
                    log.info("%s", err)
                    continue
                except Exception as err:  # the worker process died (e.g. out of memory)
                    error = f"{type(err).__name__}: {err}"
                    mark_failed(suite_dir / run_id_, error)
                # The pool starts runs in submission order: the first `workers` unfinished ones run.
                for other in [futures[f] for f in futures if not f.done()][:workers]:
                    statuses[other] = "running"
                finished(run_id_, error)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if received:
        log.info(progress(statuses))
        raise RunInterrupted(received[0])


def run_suite(path: str | Path, out: str | Path = "runs", workers: int = 1, launcher: str = "local",
              address: str | None = None, gpus_per_run: float | None = None
              ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Validate, then run a suite file; write the result store and the comparison.

    Args:
        path: suite YAML file.
        out: root output directory.
        workers: with the ``local`` launcher, runs in parallel, each in its own process with
            ``cpu_count // workers`` torch threads (unless the suite sets ``train.threads``); 1 runs
            them in this process.
        launcher: ``local`` or ``ray`` (each run a Ray task, see ``wmbench.suite.ray_launcher``).
        address: Ray cluster address for ``ray.init``; None starts a local Ray instance.
        gpus_per_run: share of a GPU per run, in (0, 1] (``wmbench.suite.gpus``): the local
            launcher gives each worker its GPU, the Ray launcher reserves it per task. None: no
            placement (every run sees the suite's GPUs and uses the first).

    Finished runs are skipped and unfinished ones resumed from their checkpoints; a run that raises
    is recorded as failed and the others go on. Only this suite's runs (and its baseline) enter the
    store (see ``wmbench.report.store``), which is written with a copy of the suite file
    (``suite.yaml``), the package versions and each objective's origin.

    Returns:
        ``(trained, baselines, failed_run_ids)``: the comparison tables
        (``wmbench.report.comparison.comparison_tables``) and the runs that failed.

    Raises:
        ConfigError: the suite is invalid, finished or resumable runs in its directory were made
            with another configuration or another run-directory format, a run's device settings
            cannot work on this machine (local launcher; ``wmbench.runtime.device.resolve``), or
            the GPU placement cannot (``wmbench.suite.gpus``); raised before any run starts.
    """
    spec, runs = load_suite(path)
    suite_dir = Path(out) / spec.name
    _check_not_stale(runs, suite_dir, path)
    devices = None
    if launcher == "local":
        for train in {r.config.train for r in runs}:
            resolve(train)  # the placement errors before any run
        if gpus_per_run is not None:
            gpus = visible_gpus(os.environ, torch.cuda.device_count)
            devices = worker_devices(gpus, workers, gpus_per_run)
    elif gpus_per_run is not None:
        runs_per_gpu(gpus_per_run)
    make_dir(suite_dir)
    (suite_dir / "suite.yaml").write_text(Path(path).read_text())
    statuses = {
        r.run_id: "done" if read_status(suite_dir / r.run_id).get("status") == "done" else "pending"
        for r in runs
    }
    todo = [r for r in runs if statuses[r.run_id] != "done"]
    log.info(
        "suite %s: %d runs, %d to do, output in %s", spec.name, len(runs), len(todo), suite_dir
    )

    def finished(run_id_: str, error: str | None) -> None:
        statuses[run_id_] = "done" if error is None else "failed"
        if error is not None:  # the failed run's status.json holds the traceback
            log.error("run %s failed: %s", run_id_, error)
        log.info(progress(statuses))

    if launcher == "ray":
        from wmbench.suite.ray_launcher import run_on_ray

        run_on_ray(todo, suite_dir, address, statuses, finished, gpus_per_run)
    else:
        _run_local(todo, suite_dir, workers, statuses, finished, devices if workers > 1 else None)
    failed = [run_id_ for run_id_, status in statuses.items() if status == "failed"]
    labelled = [(suite_dir / r.run_id, r.label, r.config.env.task, r.config.seed) for r in runs]
    for run in baseline_runs(spec, runs):
        if read_status(suite_dir / run.run_id).get("status") != "done":
            baseline(run.config, suite_dir / run.run_id, run.label)
        labelled.append((suite_dir / run.run_id, run.label, run.config.env.task, run.config.seed))
    table = collect([d for d, *_ in labelled], spec.name, [label for _, label, *_ in labelled])
    origins = {o.name: {"objective": o.registered, **entry(o.registered).provenance()}
               for o in spec.objectives}
    save(suite_dir, table, runs_frame([run_row(d, spec.name, *key) for d, *key in labelled]),
         origins)
    labels = [o.name for o in spec.objectives]
    trained, baselines = comparison_tables(table, labels, COMPARISON_REPS)
    (suite_dir / "comparison.md").write_text(
        f"# Suite `{spec.name}`\n\n{markdown(trained, baselines)}\n"
    )
    plot_curves(table, suite_dir / "curves.png", colours(labels))
    log.info(
        "wrote the result store (results, runs), comparison.md and curves.png in %s", suite_dir
    )
    return trained, baselines, failed
