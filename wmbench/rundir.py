"""Files that are whole or absent: the one atomic-write helper (checkpoints, replay chunks)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` by calling ``write(file)`` on ``<path>.tmp``, fsync it, then rename it over ``path``.

    A kill during the write leaves the previous ``path`` (if any) in place and a stray ``.tmp``.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
