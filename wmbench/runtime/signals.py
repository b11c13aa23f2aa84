"""SIGINT and SIGTERM while a run trains: the first stops it cleanly, a second at once.

The first signal only notes itself (``StopOnSignal.signum``). At the end of the update in progress
``wmbench.runtime.checkpoint.RunCheckpoint`` writes a checkpoint (with the flushed replay and
metric rows) and raises ``wmbench.errors.RunInterrupted``; ``train`` marks the run
``interrupted`` and a re-run resumes it. Before the first update of a session (the random prefill,
the first evaluation) no checkpoint could resume the run where it is, so the stream raises
``RunInterrupted`` at its next env step and a re-run starts over. A second signal raises
``RunInterrupted`` at once (the last checkpoint stays). Lightning's own handling (Ctrl-C turned
into ``sys.exit(1)``, SIGTERM deferred to the end of the epoch) never sees the signals.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from wmbench.errors import RunInterrupted

log = logging.getLogger("wmbench")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal(Callback):
    """Holds SIGINT/SIGTERM handlers while a run trains (``with``), and asks the run to stop.

    Installed when entered and again when Lightning's fit starts (which puts its own SIGTERM
    handler in place); the previous handlers come back on exit. Outside the main thread (where
    Python delivers signals) it does nothing.

    Attributes:
        signum: the first signal received, or ``None``.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        self._install()
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise RunInterrupted(signum)
        self.signum = signum
        log.warning("wmbench: %s received: stopping after the current update with a checkpoint "
                    "(send it again to stop at once)", signal.Signals(signum).name)

    def check(self, checkpoint: str | None = None) -> None:
        """Raises ``RunInterrupted`` (naming ``checkpoint``) if a signal was received."""
        if self.signum is not None:
            raise RunInterrupted(self.signum, checkpoint)
