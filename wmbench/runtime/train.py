"""Training one run: the run directory, the loggers, the Lightning Trainer, and the baselines.

``train`` checks the run directory (``wmbench.runtime.checkpoint.check_run_dir``), builds the
module, the replay stream of ``train.mode`` (``wmbench.runtime.sync.ReplayStream`` or
``wmbench.runtime.async_learner.AsyncReplayStream``) and the loggers, and lets a Lightning Trainer
run one epoch over the stream; ``baseline`` evaluates a zero-action or uniform random policy as a
run.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import shutil
import signal
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger
from torch.utils.data import DataLoader

from wmbench.agents.module import DreamerModule, NonFiniteLossError
from wmbench.configio import to_dict
from wmbench.errors import RunInterrupted
from wmbench.run_config import RunConfig, prepare
from wmbench.rundir import (
    BASELINES,
    CHECKPOINT,
    CONFIG,
    METRICS,
    REPLAY,
    atomic_write,
    describe_device,
    make_dir,
    read_status,
    write_config,
    write_status,
)
from wmbench.runtime.async_learner import AsyncReplayStream
from wmbench.runtime.checkpoint import AtomicCheckpointIO, RunCheckpoint, check_run_dir
from wmbench.runtime.device import Placement, resolve
from wmbench.runtime.env_pool import EnvPool
from wmbench.runtime.signals import StopOnSignal
from wmbench.runtime.stream import (
    StreamBase,
    eval_episode_seed,
    evaluate,
    make_eval_env,
)
from wmbench.runtime.sync import ReplayStream

log = logging.getLogger("wmbench")


LIGHTNING_NOISE = (
    ".*does not have many workers.*",  # the stream runs in the training process on purpose
    ".*treespec.*",  # Lightning's pytree helper calls torch's deprecated LeafSpec check
)
"""Warnings Lightning gives about wmbench's deliberate choices, silenced while a run trains."""


def quiet_libraries() -> None:
    """Keep the terminal for wmbench's progress: wmbench's INFO lines (resuming, suite progress) as
    plain messages on stderr, Lightning's banners and tips only from WARNING up. For the command
    line and the processes that run a suite's runs."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)


def continue_csv(logger: CSVLogger, rows: int) -> None:
    """Keeps the first ``rows`` rows of ``logger``'s ``metrics.csv`` and makes it append after them.

    Rows logged after the checkpoint (by a killed run) are dropped: the resumed run logs them again.
    Lightning's CSV writer deletes an existing file when it starts, so the kept rows are set aside
    as ``metrics.csv.kept`` while it starts (a kill in between is recovered from that file). With
    ``rows`` 0 and no file this starts a new ``metrics.csv``.
    """
    path = Path(logger.log_dir) / METRICS
    kept = path.with_name(METRICS + ".kept")
    if path.exists():
        with open(path, newline="") as f:
            lines = list(csv.reader(f))
        text = io.StringIO(newline="")
        csv.writer(text).writerows(lines[: rows + 1])
        atomic_write(kept, lambda f: f.write(text.getvalue().encode()))
        path.unlink()
    header: list[str] = []
    if kept.exists():
        with open(kept, newline="") as f:
            header = next(csv.reader(f), [])
    with warnings.catch_warnings():  # the run directory is not empty: it holds config.yaml
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        writer = logger.experiment  # starts the writer while no metrics.csv exists
    if kept.exists():
        os.replace(kept, path)
        writer.metrics_keys = header


def _make_loggers(cfg: RunConfig, run_dir: Path, resume: dict[str, Any] | None) -> list[Logger]:
    """CSV always (the result store reads ``metrics.csv``); wandb in offline mode when asked.

    With ``resume`` (the ``RunCheckpoint`` state of a checkpoint) both continue the checkpoint's
    run: the CSV after its rows, wandb under its run id.
    """
    csv_logger = CSVLogger(save_dir=str(run_dir), name="", version="")
    continue_csv(csv_logger, 0 if resume is None else resume["metrics_rows"])
    loggers: list[Logger] = [csv_logger]
    if cfg.train.logger == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        wandb_id = resume and resume["wandb_id"]
        loggers.append(
            WandbLogger(
                save_dir=str(run_dir),
                project="wmbench",
                name=run_dir.name,
                offline=True,
                id=wandb_id,
                resume="allow" if wandb_id else None,
            )
        )
    return loggers


class UpdateRows(Callback):
    """After each update, hands the module's metrics row (what ``training_step`` returned, if it
    logs) to the stream, which writes it (``StreamBase.update_done``)."""

    def __init__(self, stream: StreamBase) -> None:
        self.stream = stream

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any
    ) -> None:
        self.stream.update_done(outputs or None)


def train(cfg: RunConfig, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train one agent and write its results into ``run_dir``.

    ``cfg.train.mode`` picks how: ``sync`` (collect, then update, in one process; see
    ``wmbench.runtime.sync``) or ``async`` (actor processes act while this process trains; see
    ``wmbench.runtime.async_learner``, which also says what its resume keeps: not bit-exact). Both
    write the same files and the same metrics columns (async adds ``async/*``; its replay lives in
    ``replay/actor-<i>/``).

    Writes ``config.yaml`` (resolved; a comment above it describes the device, see
    ``wmbench.runtime.device``), ``metrics.csv`` (Lightning CSV logger: ``train/*`` every
    ``agent.log_every`` updates, ``train/episode_return`` per episode and ``eval/return`` at every
    evaluation, each row with ``env_frames`` and ``wall_time`` in seconds), ``replay/`` (the
    replay's rows in chunk files, see ``wmbench.data.replay_disk``), ``checkpoints/last.ckpt``
    (every ``train.checkpoint_every`` env frames and at the end; see ``wmbench.runtime.checkpoint``)
    and ``status.json`` (``running``; ``done`` with the summary; ``failed`` with the error; or
    ``interrupted`` by a signal; each with ``threads``, see ``run_threads``, and ``device``, see
    ``wmbench.runtime.device.Placement.record``); the names are ``wmbench.rundir``'s.

    Resuming continues from the checkpoint with its counters, replay, RNG states and the batches
    handed out, and appends to ``metrics.csv`` after the rows it had written: on CPU the run ends
    with the same parameters and metrics as one never stopped (``wall_time`` aside). A run
    directory without a checkpoint (killed before the first one) starts over.

    Args:
        cfg: the run's configuration.
        run_dir: output directory (created).
        resume: continue the run in ``run_dir`` from its checkpoint.

    Returns:
        The summary: final ``eval_return``, ``env_frames``, ``agent_steps``, ``updates``,
        ``replay_rows`` (rows ever added to the replay, all on disk), ``wall_time`` (s, all
        sessions), ``cpu_time`` (s, this process), ``params`` (trainable parameters).

    Raises:
        UnknownObjectiveError, ConfigError, UnknownTaskError: invalid configuration or run directory
            (see ``wmbench.runtime.checkpoint.check_run_dir``), one that cannot be written (see
            ``wmbench.rundir.make_dir``), or a device setting this machine cannot follow (see
            ``wmbench.runtime.device.resolve``), before any compute.
        RunInterrupted: SIGINT or SIGTERM stopped the run (``wmbench.runtime.signals``);
            ``status.json`` says ``interrupted``.
        RendererUnavailableError: no headless OpenGL backend for dm_control.
        NonFiniteLossError: a loss or gradient norm became NaN or infinite; names the update, the
            values and the last good checkpoint (also in ``status.json``).
        wmbench.runtime.async_learner.ActorError: async mode: an actor process failed (its traceback
            in the message and in ``status.json``).
    """
    objective_cls, objective_cfg = prepare(cfg)
    run_dir = Path(run_dir)
    earlier = read_status(run_dir).get("status")
    checkpoint = check_run_dir(cfg, run_dir, resume)
    recorded = checkpoint and checkpoint.get("wmbench_device", {}).get("precision")
    placement = resolve(cfg.train, recorded)  # a resumed run keeps its precision
    make_dir(run_dir)
    if checkpoint is None:  # start over: nothing of an earlier attempt may leak into this one
        if earlier:
            log.info("starting %s from scratch: its earlier attempt (%s) left no checkpoint",
                     run_dir, earlier)
        shutil.rmtree(run_dir / REPLAY, ignore_errors=True)
        for name in (METRICS, METRICS + ".kept"):
            (run_dir / name).unlink(missing_ok=True)
    else:
        stream = checkpoint["callbacks"][RunCheckpoint.__qualname__]["stream"]
        log.info("resuming %s from update %d, %d env frames",
                 run_dir, checkpoint["wmbench_updates"], stream["counters"]["env_frames"])
    device = placement.record()
    write_config(run_dir, to_dict(cfg), f"device: {describe_device(device)}")
    threads, process_threads = run_threads(cfg, checkpoint), torch.get_num_threads()
    torch.set_num_threads(threads)  # for this run only: restored below
    restore_precision = placement.apply()
    info = {"threads": threads, "device": device}
    write_status(run_dir, "running", **info)
    try:
        with StopOnSignal() as stop, warnings.catch_warnings():
            for message in LIGHTNING_NOISE:
                warnings.filterwarnings("ignore", message=message)
            summary = _train(cfg, run_dir, objective_cls, objective_cfg, checkpoint, stop,
                             placement)
    except (RunInterrupted, KeyboardInterrupt) as err:  # KeyboardInterrupt: no handler (thread)
        interrupted = err if isinstance(err, RunInterrupted) else RunInterrupted(signal.SIGINT)
        signum, last = interrupted.signum, interrupted.checkpoint
        write_status(run_dir, "interrupted", signal=signal.Signals(signum).name,
                     last_checkpoint=last, **info)
        raise RunInterrupted(signum, last, str(run_dir)) from None
    except BaseException as err:
        failure = {}
        if isinstance(err, NonFiniteLossError):
            failure = {
                "updates": err.updates,
                "non_finite": err.names,
                "last_checkpoint": err.last_checkpoint,
            }
        write_status(
            run_dir,
            "failed",
            error=f"{type(err).__name__}: {err}",
            **failure,
            **info,
            traceback=traceback.format_exc(),
        )
        raise
    finally:
        torch.set_num_threads(process_threads)
        restore_precision()
    write_status(run_dir, "done", **summary, **info)
    return summary


def run_threads(cfg: RunConfig, checkpoint: dict[str, Any] | None) -> int:
    """The torch intra-op thread count a run trains with.

    ``train.threads`` if set; else the count the run started with, recorded in its checkpoint
    (results depend on it, so a resumed run, in a new process or a suite worker, computes as a run
    never stopped); else, in async mode, the CPUs left after one per actor; else this process's
    count (torch's default, or a suite worker's share).
    """
    if cfg.train.threads:
        return cfg.train.threads
    if checkpoint is not None and "wmbench_threads" in checkpoint:
        return checkpoint["wmbench_threads"]
    if cfg.train.mode == "async":
        return max(1, (os.cpu_count() or 1) - cfg.train.actors)
    return torch.get_num_threads()


def _train(cfg: RunConfig, run_dir: Path, objective_cls: type, objective_cfg: Any,
           checkpoint: dict[str, Any] | None, stop: StopOnSignal,
           placement: Placement) -> dict[str, Any]:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    cpu_started = time.process_time()
    eval_env = make_eval_env(cfg)
    shape, action_dim = eval_env.observation_space.shape, eval_env.action_space.shape[0]
    module = DreamerModule(cfg.agent, shape, action_dim, objective_cls, objective_cfg)
    placement.compile_module(module)
    resume = None if checkpoint is None else checkpoint["callbacks"][RunCheckpoint.__qualname__]
    loggers = _make_loggers(cfg, run_dir, resume)
    if cfg.train.mode == "async":
        stream: StreamBase = AsyncReplayStream(cfg, eval_env, module, loggers, stop,
                                               run_dir / REPLAY)
    else:
        stream = ReplayStream(cfg, EnvPool(cfg), eval_env, module, loggers, stop,
                              run_dir / REPLAY)
    checkpointer = RunCheckpoint(stream, run_dir / CHECKPOINT, cfg.train.checkpoint_every, stop,
                                 placement.record())
    trainer = L.Trainer(
        **placement.trainer_options(),
        max_epochs=1,
        logger=loggers,
        # a checkpoint counts the rows before it
        callbacks=[stop, UpdateRows(stream), checkpointer, *placement.callbacks()],
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=False,  # RunCheckpoint writes the checkpoints
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    # On CUDA the uint8 batch is copied once, from page-locked memory and without blocking, and
    # becomes float on the device (the encoder's ``image_to_float``); the stream page-locks it.
    loader = DataLoader(stream, batch_size=None)
    try:
        trainer.fit(
            module,
            train_dataloaders=loader,
            ckpt_path=None if checkpoint is None else run_dir / CHECKPOINT,
            weights_only=False,
        )
    except NonFiniteLossError as err:
        raise NonFiniteLossError(err.updates, err.names, checkpointer.last) from None
    finally:
        stream.close()
    if stream.last_eval is None or not math.isfinite(stream.last_eval):
        raise RuntimeError(f"run in {run_dir} ended without a finite evaluation return")
    return {
        "eval_return": stream.last_eval,
        "env_frames": stream.counters.env_frames,
        "agent_steps": stream.counters.agent_steps,
        "updates": module.updates,
        "replay_rows": stream.replay_rows,
        "wall_time": time.time() - stream.started,
        "cpu_time": time.process_time() - cpu_started,
        # trainable: world model, objective, actor, critic
        "params": sum(p.numel() for p in module.parameters() if p.requires_grad),
    }


def baseline(cfg: RunConfig, run_dir: str | Path, policy: str) -> float:
    """Evaluate a trivial policy on ``cfg.env`` and store it as a run of objective ``policy``.

    ``zero`` acts with 0 in every action dimension; ``random`` with uniform random actions (the
    action space seeded with the run's seed). Both are scored on the episodes of a trained run's
    first and final evaluations (``train.final_eval_episodes`` episodes reset from
    ``eval_episode_seed(seed, 0)``) in the run's evaluation environment (``make_eval_env``).
    Writes ``config.yaml``, ``metrics.csv`` (one ``eval/return`` row at 0 env frames) and
    ``status.json``.

    Args:
        cfg: the configuration of the runs the baseline stands beside.
        run_dir: its run directory (created).
        policy: one of ``wmbench.rundir.BASELINES``.

    Returns:
        The mean return over the episodes.

    Raises:
        ValueError: ``policy`` is not a baseline.
    """
    if policy not in BASELINES:
        raise ValueError(f"unknown baseline {policy!r}; choose one of {', '.join(BASELINES)}")
    run_dir = make_dir(run_dir)
    started = time.time()
    env = make_eval_env(cfg)
    env.action_space.seed(cfg.seed)
    zero = np.zeros(env.action_space.shape, np.float32)

    def act(obs: np.ndarray, first: bool) -> np.ndarray:
        return zero if policy == "zero" else env.action_space.sample()

    value = evaluate(
        env,
        act,
        cfg.train.final_eval_episodes,
        seed=eval_episode_seed(cfg.seed, 0),
    )
    env.close()
    data = to_dict(cfg)
    data["objective"] = policy
    (run_dir / CONFIG).write_text(yaml.safe_dump(data, sort_keys=False))
    (run_dir / METRICS).write_text(
        f"env_frames,wall_time,eval/return\n0,{time.time() - started},{value}\n"
    )
    write_status(run_dir, "done", eval_return=value)
    return value
