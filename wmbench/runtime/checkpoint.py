"""Whole-run checkpoints: written atomically, every N env frames and at the end; read back to
resume.

``checkpoints/last.ckpt`` is a Lightning checkpoint (model with slow critic, the three Adam states,
loop progress, ``updates``) plus, under ``callbacks["RunCheckpoint"]``, everything else a run needs
to continue exactly: the replay stream's state (counters, batches handed out, RNG states of torch,
numpy, python, the replay sampler and the env, the current episode's actions), the number of
``metrics.csv`` rows written, the wandb run id and the next checkpoint's env frame. Top-level
``wmbench_format`` is the run-directory format (``wmbench.rundir.RUN_FORMAT``; another format is
refused), ``wmbench_threads`` torch's thread count (a resumed run trains with it again, see
``wmbench.runtime.train.run_threads``) and ``wmbench_device`` the placement it was written with
(``wmbench.runtime.device.Placement.record``; a resumed run keeps its precision). Tensors load
onto the CPU first (``torch.load`` with ``map_location``), so a checkpoint written on a GPU resumes
on the CPU and the other way round.

Before each checkpoint the loggers and the replay chunks (``wmbench.data.replay_disk``) are flushed,
so a checkpoint never refers to rows or metrics held only in memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

import wmbench
from wmbench.configio import ConfigError, load_yaml, to_dict
from wmbench.run_config import RunConfig
from wmbench.rundir import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    RUN_FORMAT,
    atomic_write,
    metric_rows,
    read_status,
    same_run,
)
from wmbench.runtime.signals import StopOnSignal
from wmbench.runtime.stream import StreamBase


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into ``<path>.tmp``, fsync, then rename over ``path``.

    A kill during the write leaves the previous checkpoint in place (and a stray ``.tmp``).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: torch.save(checkpoint, f))


def read_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run directory's checkpoint, or ``None`` if it has none.

    Raises:
        ConfigError: The checkpoint cannot be read or was written in another run-directory format
            (message names the directory and the fix).
    """
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ConfigError(
            f"{path} cannot be read ({type(err).__name__}: {err}); delete {run_dir} to start the "
            "run over"
        ) from None
    found = checkpoint.get("wmbench_format", 1) if isinstance(checkpoint, dict) else None
    if found != RUN_FORMAT:
        raise ConfigError(
            f"{run_dir} was written by another wmbench version (run format {found}, this wmbench "
            f"{wmbench.__version__} reads format {RUN_FORMAT}) and cannot be resumed; delete it to "
            "start the run over, or finish it with the wmbench version that wrote it"
        )
    return checkpoint


def check_run_dir(cfg: RunConfig, run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """Checks that ``run_dir`` may be trained into with ``cfg``; returns its checkpoint to resume
    from, if any.

    Raises:
        ConfigError: ``run_dir`` holds a finished run; holds a checkpoint but ``resume`` is false;
            holds a checkpoint of another run-directory format, or one made with another
            configuration than ``cfg`` (where it runs aside, ``wmbench.rundir.same_run``). Each
            message names the fix.
    """
    if read_status(run_dir).get("status") == "done":
        raise ConfigError(f"{run_dir} holds a finished run; choose another --out or delete it")
    checkpoint = read_checkpoint(run_dir)
    if checkpoint is None:
        return None
    if not resume:
        raise ConfigError(
            f"{run_dir} holds an unfinished run with a checkpoint; continue it with "
            f"`wmbench train --resume {run_dir}` or delete the directory to start over"
        )
    if not same_run(load_yaml(run_dir / CONFIG), to_dict(cfg)):
        raise ConfigError(
            f"{run_dir} was made with another configuration; resume it with its own config.yaml or "
            "delete it"
        )
    return checkpoint


class RunCheckpoint(Callback):
    """Saves ``checkpoints/last.ckpt`` every ``every`` env frames, when training ends, and when a
    signal asks the run to stop (then raises ``RunInterrupted``).

    The stream's state is taken at ``on_train_batch_end``: the model has made update ``u`` and the
    stream has already produced the next batch (Lightning fetches one batch ahead), which it samples
    again on resume; see ``ReplayStream.state_dict``. Nothing is saved when training stops with an
    error (the state may be mid-update): the previous checkpoint stays.

    Args:
        stream: the run's replay stream (sync or async).
        path: checkpoint file.
        every: env frames between checkpoints.
        stop: the run's signal handlers (``wmbench.runtime.signals``).
        device: the run's ``Placement.record``, saved as ``wmbench_device``.

    Attributes:
        last: ``"<path> (update u, env_frames f)"`` of the newest checkpoint on disk, or ``None``.
    """

    def __init__(self, stream: StreamBase, path: Path, every: int, stop: StopOnSignal,
                 device: dict[str, Any]) -> None:
        self.stream, self.path, self.every, self.stop = stream, Path(path), every, stop
        self.device = device
        self.next_checkpoint = every
        self.metrics_rows = 0
        self.wandb_id: str | None = None
        self.last: str | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream.state_dict(),
            "next_checkpoint": self.next_checkpoint,
            "metrics_rows": self.metrics_rows,
            "wandb_id": self.wandb_id,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.next_checkpoint, self.metrics_rows = state["next_checkpoint"], state["metrics_rows"]

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["wmbench_format"] = RUN_FORMAT
        checkpoint["wmbench_threads"] = torch.get_num_threads()  # restored on resume
        checkpoint["wmbench_device"] = self.device
        checkpoint["wmbench_version"] = wmbench.__version__

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        frames = checkpoint["callbacks"][self.state_key]["stream"]["counters"]["env_frames"]
        self.last = f"{self.path} (update {checkpoint['wmbench_updates']}, env_frames {frames})"

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        if self.stream.counters.env_frames >= self.next_checkpoint or self.stop.signum:
            self.save(trainer)
        self.stop.check(self.last)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        """Flushes the loggers and the replay, then writes the checkpoint atomically."""
        frames = self.stream.counters.env_frames
        self.next_checkpoint = (frames // self.every + 1) * self.every
        for logger in trainer.loggers:
            logger.save()
            if isinstance(logger, CSVLogger):
                self.metrics_rows = metric_rows(Path(logger.log_dir) / METRICS)
            elif isinstance(logger, WandbLogger):
                self.wandb_id = logger.version
        self.stream.flush()
        trainer.save_checkpoint(self.path, weights_only=False)
        self.last = f"{self.path} (update {trainer.lightning_module.updates}, env_frames {frames})"
