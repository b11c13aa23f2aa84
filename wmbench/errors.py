"""The errors the command line reports in one line, by kind (no heavy imports, for the CLI).

- ``UsageError``: the input or the machine cannot work (bad config, task, objective, renderer, run
  directory); ``wmbench`` prints ``wmbench: error: <message>`` and exits 2, before any compute.
- ``RunError``: a run stopped for a reason its message explains (the NaN guard, a failed actor);
  exit 1.
- ``RunInterrupted``: SIGINT or SIGTERM stopped a run; exit 128 + the signal number (130, 143).
"""

from __future__ import annotations

import signal


class UsageError(Exception):
    """Input, settings or machine that cannot work; the message names the fix."""


class RunError(RuntimeError):
    """A run stopped with an error its message explains (no traceback needed)."""


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM stopped a run (a ``BaseException``: no ``except Exception`` swallows it).

    Attributes:
        signum: the signal's number.
        checkpoint: ``"<path> (update u, env_frames f)"`` of the checkpoint written when it stopped,
            or ``None`` if none could be written (e.g. during the random prefill).
    """

    def __init__(self, signum: int, checkpoint: str | None = None) -> None:
        self.signum, self.checkpoint = signum, checkpoint
        where = f"checkpoint: {checkpoint}" if checkpoint else "no checkpoint written"
        super().__init__(f"interrupted by {signal.Signals(signum).name}; {where}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by it (130 SIGINT, 143
        SIGTERM)."""
        return 128 + self.signum
