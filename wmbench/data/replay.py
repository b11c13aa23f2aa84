"""Sequence replay buffer over uint8 frames for a single stream of episodes, and sampling from
several (one per env or actor of a run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np


class Row(NamedTuple):
    """One row of the replay (the arguments of ``Replay.add``; see ``Replay`` for the alignment).

    Attributes:
        image: o_t, uint8 ``[C, H, W]``.
        prev_action: a_{t-1}, float32 ``[A]``; zeros when ``is_first``.
        reward: r_t, caused by a_{t-1}; 0 when ``is_first``.
        is_first, is_terminal, is_last: the row's flags.
    """

    image: np.ndarray
    prev_action: np.ndarray
    reward: float
    is_first: bool
    is_terminal: bool
    is_last: bool


FIELDS = Row._fields
"""Names of the per-row arrays, as returned by ``Replay.sample`` and ``Replay.rows``."""


class Replay:
    """FIFO ring buffer of environment rows, sampled as windows of consecutive rows.

    Stores one stream of episodes from one environment, in insertion order. Row ``t``
    holds ``(o_t, a_{t-1}, r_t)``: the observation, the action that led to it, and the
    reward that action caused. Time alignment for one episode of three actions::

        env call:      reset()   step(a_0)  step(a_1)  step(a_2)
        row t:         0         1          2          3
        image:         o_0       o_1        o_2        o_3
        prev_action:   0         a_0        a_1        a_2
        reward:        0         r_1        r_2        r_3
        is_first:      True      False      False      False
        is_terminal:   False     False      False      True/False
        is_last:       False     False      False      True

    ``is_terminal`` marks a true terminal state (no bootstrapping from it);
    ``is_last`` marks the last row of an episode, whether terminal or truncated, so
    ``is_terminal`` implies ``is_last``. ``add`` enforces the stream invariant
    ``is_first[t] == (t is the first row added or is_last[t-1])``, and that first rows
    carry a zero ``prev_action`` and zero reward. Hence every episode boundary inside a
    window of consecutively stored rows falls on a row with ``is_first=True``.

    Frames are kept as uint8 only; when full, the oldest row is overwritten. Rows are also
    numbered over the whole stream (``added`` counts every row ever added, evicted ones
    included), which is how ``wmbench.data.replay_disk`` writes them out and reads them back.

    Attributes:
        capacity: Maximum number of stored rows.
        image_shape: Frame shape ``(C, H, W)``.
        action_dim: Action size ``A``.
    """

    def __init__(
        self, capacity: int, image_shape: tuple[int, int, int], action_dim: int, seed: int = 0
    ) -> None:
        """Preallocates storage for ``capacity`` rows.

        Args:
            capacity: Maximum number of stored rows (agent steps), ``>= 1``.
            image_shape: Frame shape ``(C, H, W)``, all positive.
            action_dim: Action size ``A``, ``>= 1``.
            seed: Seed of the generator used by :meth:`sample`.

        Raises:
            ValueError: If ``capacity`` or ``action_dim`` is below 1, or ``image_shape``
                is not three positive integers.
        """
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
            raise ValueError(
                f"image_shape must be three positive ints (C, H, W), got {image_shape}"
            )
        self.capacity = int(capacity)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.action_dim = int(action_dim)
        self._image = np.zeros((self.capacity, *self.image_shape), dtype=np.uint8)
        self._prev_action = np.zeros((self.capacity, self.action_dim), dtype=np.float32)
        self._reward = np.zeros(self.capacity, dtype=np.float32)
        self._is_first = np.zeros(self.capacity, dtype=bool)
        self._is_terminal = np.zeros(self.capacity, dtype=bool)
        self._is_last = np.zeros(self.capacity, dtype=bool)
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._next = 0  # physical index of the next write; always added % capacity
        self._size = 0
        self._added = 0
        self._expect_first = True  # next added row must start an episode

    def __len__(self) -> int:
        """Returns the number of stored rows (at most ``capacity``)."""
        return self._size

    @property
    def added(self) -> int:
        """Number of rows ever added (stream index of the next row), evicted rows included."""
        return self._added

    def rng_state(self) -> dict[str, Any]:
        """State of the generator ``sample`` draws from (a dict of ints)."""
        return self._rng.bit_generator.state

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restores a state from ``rng_state``: the next ``sample`` draws as it did then."""
        self._rng.bit_generator.state = state

    @property
    def nbytes(self) -> int:
        """Total bytes of the storage arrays: ``capacity * (C*H*W + 4*A + 4 + 3)``."""
        arrays = (
            self._image,
            self._prev_action,
            self._reward,
            self._is_first,
            self._is_terminal,
            self._is_last,
        )
        return sum(a.nbytes for a in arrays)

    def add(
        self,
        image: np.ndarray,
        prev_action: np.ndarray,
        reward: float,
        is_first: bool,
        is_terminal: bool,
        is_last: bool,
    ) -> None:
        """Appends one row, evicting the oldest row when full.

        Args:
            image: Observation ``o_t``, uint8 array of shape ``(C, H, W)``.
            prev_action: Action ``a_{t-1}``, real array-like of shape ``(A,)``; stored as
                float32. Must be all zeros when ``is_first``.
            reward: Reward ``r_t`` caused by ``prev_action``; must be 0 when ``is_first``.
            is_first: Whether this row starts an episode.
            is_terminal: Whether ``o_t`` is a true terminal state.
            is_last: Whether this is the episode's last row (terminal or truncated).

        Raises:
            ValueError: If ``image`` is not uint8 of shape ``image_shape``,
                ``prev_action`` is not of shape ``(A,)``, a flag is not a bool, or the
                row breaks the episode invariants documented on the class (``is_first``
                must equal "previous row was last", first rows need zero action and
                reward, ``is_terminal`` requires ``is_last``).
        """
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            dtype = getattr(image, "dtype", None)
            raise ValueError(
                f"image must be a uint8 numpy array, got {type(image).__name__} of dtype {dtype}"
            )
        if image.shape != self.image_shape:
            raise ValueError(f"image must have shape {self.image_shape}, got {image.shape}")
        action = np.asarray(prev_action, dtype=np.float32)
        if action.shape != (self.action_dim,):
            raise ValueError(
                f"prev_action must have shape ({self.action_dim},), got {action.shape}"
            )
        flags = {"is_first": is_first, "is_terminal": is_terminal, "is_last": is_last}
        for name, flag in flags.items():
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, got {flag!r}")
        if bool(is_first) != self._expect_first:
            if self._expect_first:
                raise ValueError(
                    "is_first must be True on the first row and after a row with is_last=True"
                )
            raise ValueError("is_first=True but the previous row did not have is_last=True")
        if is_first and (float(reward) != 0.0 or np.any(action != 0.0)):
            raise ValueError("a row with is_first=True must have zero prev_action and zero reward")
        if is_terminal and not is_last:
            raise ValueError("is_terminal=True requires is_last=True")

        i = self._next
        self._image[i] = image
        self._prev_action[i] = action
        self._reward[i] = reward
        self._is_first[i] = is_first
        self._is_terminal[i] = is_terminal
        self._is_last[i] = is_last
        self._next = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)
        self._added += 1
        self._expect_first = bool(is_last)

    def rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Copies of the stored rows with stream indices ``start <= i < stop`` (see ``added``).

        Returns:
            Dict keyed by ``FIELDS``: ``image`` uint8 ``[N, C, H, W]``, ``prev_action``
            float32 ``[N, A]``, ``reward`` float32 ``[N]``, flags bool ``[N]``, with
            ``N = stop - start``; values as stored (``is_first`` is not forced).

        Raises:
            ValueError: If a row in the range was evicted or not added yet.
        """
        oldest = self._added - self._size
        if not oldest <= start <= stop <= self._added:
            raise ValueError(
                f"rows {start}..{stop} are not all stored (stored: {oldest}..{self._added})"
            )
        idx = np.arange(start, stop) % self.capacity
        return {name: getattr(self, f"_{name}")[idx] for name in FIELDS}

    def extend(self, rows: Mapping[str, np.ndarray], start: int) -> None:
        """Appends rows in bulk, as read back from disk; the inverse of ``rows``.

        Args:
            rows: Arrays keyed by ``FIELDS`` with the dtypes and shapes ``rows`` returns.
            start: Stream index of the first row. Must equal ``added``, except into an empty
                buffer, which may start anywhere (e.g. mid-episode, after older rows were evicted).

        Raises:
            ValueError: If a field is missing or has the wrong dtype or shape, ``start`` leaves a
                gap, or the flags break the episode invariant between consecutive rows.
        """
        n = len(rows["image"])
        expected = {
            "image": (np.uint8, (n, *self.image_shape)),
            "prev_action": (np.float32, (n, self.action_dim)),
            **{name: (np.float32 if name == "reward" else np.bool_, (n,)) for name in FIELDS[2:]},
        }
        for name, (dtype, shape) in expected.items():
            array = rows[name]
            if array.dtype != dtype or array.shape != shape:
                raise ValueError(
                    f"{name} must be {np.dtype(dtype)} of shape {shape}, got {array.dtype} "
                    f"{array.shape}"
                )
        if self._size and start != self._added:
            raise ValueError(f"rows must continue at stream index {self._added}, got {start}")
        first, last = rows["is_first"], rows["is_last"]
        follows_last = np.concatenate([[self._expect_first], last[:-1]])
        if np.any((first != follows_last)[0 if self._size else 1:]):
            raise ValueError(
                "is_first must be True exactly on the rows that follow a row with is_last=True"
            )
        keep = slice(max(0, n - self.capacity), n)
        idx = np.arange(start + keep.start, start + n) % self.capacity
        for name in FIELDS:
            getattr(self, f"_{name}")[idx] = rows[name][keep]
        self._added = start + n
        self._next = self._added % self.capacity
        self._size = min(self._size + n, self.capacity)
        self._expect_first = bool(last[-1]) if n else self._expect_first

    def sample(self, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
        """Samples windows of consecutive stored rows, uniformly over start positions
        (``gather(windows(batch_size, seq_len))``).

        Each window covers ``seq_len`` rows adjacent in insertion order and never wraps
        across the ring-buffer seam (from the newest row back to the oldest). A window
        may run across an episode boundary; the boundary row has ``is_first=True``.
        Every window's first row is returned with ``is_first=True`` (the stored value is
        left unchanged), so consumers treat each window as a fresh sequence: the RSSM
        resets its state there and ignores that row's ``prev_action`` (``WorldModel.loss``
        zeroes it), while its ``reward`` and ``is_terminal`` are returned as stored and are
        trained on like every other row's (r_t of a window that starts mid-episode is a true
        reward of o_t's step; at an episode's start it is 0).

        Args:
            batch_size: Number of windows ``B``, ``>= 1``.
            seq_len: Rows per window ``T``, ``>= 1``.

        Returns:
            Dict of fresh arrays (copies, safe to modify):
            ``image`` uint8 ``[B, T, C, H, W]``, ``prev_action`` float32 ``[B, T, A]``,
            ``reward`` float32 ``[B, T]``, and ``is_first``, ``is_terminal``,
            ``is_last`` bool ``[B, T]``.

        Raises:
            ValueError: If ``batch_size`` or ``seq_len`` is below 1, or fewer than
                ``seq_len`` rows are stored.
        """
        return self.gather(self.windows(batch_size, seq_len))

    def windows(self, batch_size: int, seq_len: int) -> np.ndarray:
        """Draws the slots of ``batch_size`` windows of ``seq_len`` rows (``sample``'s draw,
        from this replay's generator); ``gather`` reads them.

        Returns:
            int64 ``[B, T]`` ring-buffer slots, valid until the next ``add`` or ``extend``.

        Raises:
            ValueError: as ``sample``.
        """
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size} and {seq_len}")
        if self._size < seq_len:
            raise ValueError(
                f"cannot sample windows of {seq_len} rows: only {self._size} rows stored"
            )
        oldest = (self._next - self._size) % self.capacity
        starts = self._rng.integers(0, self._size - seq_len + 1, size=batch_size)
        return (oldest + starts[:, None] + np.arange(seq_len)[None, :]) % self.capacity

    def gather(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """The rows of ``windows``' slots ``[B, T]``, each window's first row marked
        ``is_first``: ``sample``'s arrays.

        Only reads the replay (no generator draw), so it may run in another thread while no row
        is added (``wmbench.runtime.stream.StreamBase``).
        """
        batch = {name: getattr(self, f"_{name}")[slots] for name in FIELDS}
        batch["is_first"][:, 0] = True
        return batch


Windows = list[tuple[Replay, np.ndarray]]
"""A batch's windows before they are read: each replay sampled with its slots ``[n, T]``
(``draw_windows``; ``gather_windows`` reads them)."""


def draw_windows(
    replays: Sequence[Replay], rng: np.random.Generator, batch_size: int, seq_len: int
) -> Windows:
    """Draws ``batch_size`` windows from several replays (one per env or actor of a run).

    The windows are split over the replays that hold at least ``seq_len`` rows in proportion to
    their sizes (one multinomial draw from ``rng``; a single replay is sampled without it); each
    replay draws its own windows (``Replay.windows``). ``gather_windows`` reads them, in replay
    order.

    Raises:
        ValueError: no replay holds ``seq_len`` rows.
    """
    if len(replays) == 1:
        return [(replays[0], replays[0].windows(batch_size, seq_len))]
    sizes = np.array([len(r) if len(r) >= seq_len else 0 for r in replays], np.float64)
    if not sizes.sum():
        raise ValueError(f"cannot sample windows of {seq_len} rows: no replay holds that many")
    counts = rng.multinomial(batch_size, sizes / sizes.sum())
    return [(r, r.windows(n, seq_len)) for r, n in zip(replays, counts, strict=True) if n]


def gather_windows(windows: Windows) -> dict[str, np.ndarray]:
    """The rows of ``draw_windows``' windows: ``Replay.sample``'s arrays, ``[batch_size, seq_len,
    ...]``, the replays' windows concatenated in order. Only reads the replays."""
    parts = [replay.gather(slots) for replay, slots in windows]
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
