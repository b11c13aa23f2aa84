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
            or ``None`` if none was (before the first update, or at a second signal).
        run_dir: the run's directory, once known.
    """

    def __init__(
        self, signum: int, checkpoint: str | None = None, run_dir: str | None = None
    ) -> None:
        self.signum, self.checkpoint, self.run_dir = signum, checkpoint, run_dir
        name = signal.Signals(signum).name
        if run_dir is None:
            text = f"interrupted by {name}; running it again resumes runs from their checkpoints"
        elif checkpoint:
            text = (f"{run_dir} interrupted by {name}, checkpoint {checkpoint}; `wmbench train "
                    f"--resume {run_dir}` (or running its suite again) continues it from there")
        else:
            text = (f"{run_dir} interrupted by {name} without a new checkpoint; running it again "
                    "continues from its last checkpoint, or starts it over if it has none")
        super().__init__(text)

    def __reduce__(self) -> tuple:  # pickled from a suite's worker process
        return type(self), (self.signum, self.checkpoint, self.run_dir)

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by it (130, 143)."""
        return 128 + self.signum
