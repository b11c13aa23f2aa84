"""The replay's rows on disk: compressed chunk files written as the replay fills, read back on
resume.

A run directory's ``replay/`` holds files ``<start>-<stop>.npz`` (stream indices, 12 digits each;
see ``Replay.added``), each with rows ``start <= i < stop`` as the arrays of
``wmbench.data.replay.FIELDS`` (``image`` uint8 ``[N, C, H, W]``, ``prev_action`` float32
``[N, A]``, ``reward`` float32 ``[N]``, flags bool ``[N]``). Files are written to a temporary name
and renamed, so a kill leaves only whole files and loses at most the rows not flushed yet.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from wmbench.data.replay import FIELDS, Replay
from wmbench.rundir import atomic_write


class ReplayDisk:
    """Writes a ``Replay``'s rows to ``directory`` in chunks and refills a ``Replay`` from them.

    The rows are read from the replay itself when a chunk is due, so nothing is buffered twice in
    memory; ``chunk_rows`` must not exceed the replay's capacity (rows would be evicted unwritten).
    Files whose rows have all been evicted from the replay are deleted.

    Args:
        directory: where the chunk files live (created).
        chunk_rows: rows per file written by ``maybe_flush`` (``flush`` writes whatever is pending).
    """

    def __init__(self, directory: str | os.PathLike, chunk_rows: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.chunk_rows = chunk_rows
        self.written = 0  # stream index up to which rows are on disk

    def files(self) -> list[tuple[int, int, Path]]:
        """``(start, stop, path)`` of every chunk file, sorted by ``start``."""
        found = []
        for path in self.directory.glob("*-*.npz"):
            start, _, stop = path.stem.partition("-")
            found.append((int(start), int(stop), path))
        return sorted(found)

    def stored_rows(self) -> int:
        """Number of rows in the chunk files (read from their names)."""
        return sum(stop - start for start, stop, _ in self.files())

    def maybe_flush(self, replay: Replay) -> None:
        """Writes one chunk when ``chunk_rows`` rows are pending."""
        if replay.added - self.written >= self.chunk_rows:
            self.flush(replay)

    def flush(self, replay: Replay) -> None:
        """Writes every pending row as one chunk and deletes the chunks the replay has evicted.

        Raises:
            RuntimeError: If pending rows were already evicted (``chunk_rows`` above the capacity).
        """
        start, stop = self.written, replay.added
        if stop > start:
            if start < stop - len(replay):
                raise RuntimeError(
                    f"replay rows {start}..{stop - len(replay)} were evicted before they were "
                    "written"
                )
            self._write(start, stop, replay.rows(start, stop))
            self.written = stop
        oldest = replay.added - len(replay)
        for _, end, path in self.files():
            if end <= oldest:
                path.unlink()

    def _write(self, start: int, stop: int, rows: dict[str, np.ndarray]) -> None:
        atomic_write(
            self.directory / f"{start:012d}-{stop:012d}.npz",
            lambda f: np.savez_compressed(f, **rows),
        )

    def restore(self, replay: Replay, rows: int) -> None:
        """Refills an empty ``replay`` with the newest of the first ``rows`` rows, one file at a
        time.

        Rows at stream index ``rows`` and later (written after the checkpoint that recorded
        ``rows``) are removed from disk: the resumed run collects them again. A file holding rows on
        both sides is rewritten with the older ones first, then deleted, so a kill at any point
        leaves the rows restorable by a later call.

        Args:
            replay: an empty replay of the run's capacity and shapes.
            rows: stream index up to which to restore (``Replay.added`` at the checkpoint).

        Raises:
            RuntimeError: If the files do not cover the needed rows (a file is missing or damaged).
        """
        oldest = max(0, rows - replay.capacity)

        def loaded() -> int:  # stream index below which rows are loaded or not needed
            return replay.added if len(replay) else oldest

        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink()
        for start, stop, path in self.files():
            have = loaded()
            if start >= rows or min(stop, rows) <= have:
                if (
                    start >= rows or stop > rows
                ):  # after the checkpoint, or a duplicate of loaded rows
                    path.unlink()
                continue
            if start > have:
                raise RuntimeError(self._gap(have, rows))
            with np.load(path) as data:
                chunk = {name: data[name][: rows - start] for name in FIELDS}
            if stop > rows:  # written after the checkpoint: keep only its older rows
                self._write(start, rows, chunk)
                path.unlink()
            replay.extend({name: array[have - start :] for name, array in chunk.items()}, have)
        if loaded() != rows:
            raise RuntimeError(self._gap(loaded(), rows))
        self.written = rows

    def _gap(self, start: int, stop: int) -> str:
        return (
            f"replay chunks in {self.directory} miss rows from stream index {start} (needed up to "
            f"{stop}); the run directory is damaged: delete it and start the run over"
        )
