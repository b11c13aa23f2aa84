"""Tests for wmbench.data.replay.Replay."""

from __future__ import annotations

import numpy as np
import pytest

from wmbench.data.replay import Replay

SHAPE = (2, 3, 3)
ACTION_DIM = 2


def frame(frame_id: int) -> np.ndarray:
    """Encodes a frame id (< 65536) into a uint8 image: channel 0 low byte, channel 1 high byte."""
    img = np.empty(SHAPE, dtype=np.uint8)
    img[0] = frame_id % 256
    img[1] = frame_id // 256
    return img


def decode(images: np.ndarray) -> np.ndarray:
    """Decodes frame ids from uint8 images [..., C, H, W] -> int64 [...]."""
    return images[..., 0, 0, 0].astype(np.int64) + 256 * images[..., 1, 0, 0].astype(np.int64)


def fill(replay: Replay, episode_lengths: list[int]) -> list[int]:
    """Adds episodes with globally increasing frame ids; returns the ids of first rows.

    Non-first rows get prev_action [id, -id] and reward id / 2, so alignment is checkable.
    Even-indexed episodes end terminal, odd ones truncated.
    """
    firsts = []
    frame_id = 0
    for ep, length in enumerate(episode_lengths):
        for t in range(length):
            first, last = t == 0, t == length - 1
            if first:
                firsts.append(frame_id)
            action = np.zeros(ACTION_DIM) if first else np.array([frame_id, -frame_id])
            replay.add(
                frame(frame_id),
                action,
                0.0 if first else frame_id / 2,
                is_first=first,
                is_terminal=last and ep % 2 == 0,
                is_last=last,
            )
            frame_id += 1
    return firsts


def test_fifo_eviction_keeps_newest_rows():
    replay = Replay(capacity=10, image_shape=SHAPE, action_dim=ACTION_DIM)
    fill(replay, [7])
    assert len(replay) == 7
    np.testing.assert_array_equal(
        decode(replay.sample(3, 7)["image"]), np.tile(np.arange(7), (3, 1))
    )

    fill_more = Replay(capacity=10, image_shape=SHAPE, action_dim=ACTION_DIM)
    fill(fill_more, [6, 9, 10])  # 25 rows, ids 0..24
    assert len(fill_more) == 10
    # Only one valid start: the whole buffer, oldest to newest.
    batch = fill_more.sample(4, 10)
    np.testing.assert_array_equal(decode(batch["image"]), np.tile(np.arange(15, 25), (4, 1)))


def test_windows_never_cross_the_seam_and_cover_all_starts():
    capacity, seq_len, total = 50, 8, 137
    replay = Replay(capacity=capacity, image_shape=SHAPE, action_dim=ACTION_DIM, seed=3)
    lengths = [13, 1, 40, 25, 7, 30, 21]
    assert sum(lengths) == total
    fill(replay, lengths)
    ids = decode(replay.sample(3000, seq_len)["image"])
    np.testing.assert_array_equal(np.diff(ids, axis=1), np.ones((3000, seq_len - 1)))
    assert ids.min() == total - capacity
    assert ids.max() == total - 1
    assert set(ids[:, 0].tolist()) == set(range(total - capacity, total - seq_len + 1))


def test_episode_boundaries_inside_windows_are_marked_first():
    replay = Replay(capacity=60, image_shape=SHAPE, action_dim=ACTION_DIM, seed=1)
    lengths = [5, 3, 1, 8, 2, 12, 4, 6]
    firsts = set(fill(replay, lengths))
    ends = {f - 1 for f in firsts if f > 0} | {sum(lengths) - 1}
    terminal_ends = {i for k, i in enumerate(sorted(ends)) if k % 2 == 0}
    batch = replay.sample(500, 6)
    ids = decode(batch["image"])
    expected_first = np.isin(ids, sorted(firsts))
    expected_first[:, 0] = True
    np.testing.assert_array_equal(batch["is_first"], expected_first)
    np.testing.assert_array_equal(batch["is_last"], np.isin(ids, sorted(ends)))
    np.testing.assert_array_equal(batch["is_terminal"], np.isin(ids, sorted(terminal_ends)))
    # Within a window, the row after an is_last row is always an is_first row.
    np.testing.assert_array_equal(batch["is_last"][:, :-1], batch["is_first"][:, 1:])
    assert batch["is_last"][:, :-1].any(), "no sampled window spans an episode boundary"


def test_first_column_forced_and_values_aligned():
    replay = Replay(capacity=40, image_shape=SHAPE, action_dim=ACTION_DIM, seed=2)
    fill(replay, [40])  # one episode: only id 0 is stored as first
    batch = replay.sample(200, 5)
    ids = decode(batch["image"])
    assert batch["is_first"][:, 0].all()
    assert (ids[:, 0] > 0).any(), "no window starts mid-episode"
    assert not batch["is_first"][:, 1:].any()
    # Forcing acts on the returned copy only: stored rows stay non-first in later samples.
    assert not replay.sample(200, 5)["is_first"][:, 1:].any()
    expected_action = np.stack([ids, -ids], axis=-1).astype(np.float32)
    np.testing.assert_array_equal(batch["prev_action"], expected_action)
    np.testing.assert_array_equal(batch["reward"], (ids / 2).astype(np.float32))


def test_sample_dtypes_and_shapes():
    replay = Replay(capacity=20, image_shape=SHAPE, action_dim=ACTION_DIM)
    fill(replay, [12])
    batch = replay.sample(4, 3)
    expected = {
        "image": (np.uint8, (4, 3, *SHAPE)),
        "prev_action": (np.float32, (4, 3, ACTION_DIM)),
        "reward": (np.float32, (4, 3)),
        "is_first": (np.bool_, (4, 3)),
        "is_terminal": (np.bool_, (4, 3)),
        "is_last": (np.bool_, (4, 3)),
    }
    assert set(batch) == set(expected)
    for key, (dtype, shape) in expected.items():
        assert batch[key].dtype == dtype, key
        assert batch[key].shape == shape, key


def test_same_seed_same_samples_different_seed_differs():
    def draw(seed: int) -> np.ndarray:
        replay = Replay(capacity=100, image_shape=SHAPE, action_dim=ACTION_DIM, seed=seed)
        fill(replay, [30, 50, 20])
        return decode(replay.sample(16, 4)["image"])

    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))


def test_nbytes_is_dominated_by_uint8_frames():
    capacity, shape, action_dim = 1000, (3, 64, 64), 6
    replay = Replay(capacity=capacity, image_shape=shape, action_dim=action_dim)
    pixels = 3 * 64 * 64
    assert replay.nbytes == capacity * (pixels + 4 * action_dim + 4 + 3)
    assert replay._image.dtype == np.uint8
    assert replay._image.nbytes == capacity * pixels
    assert replay._image.nbytes > 0.99 * replay.nbytes


@pytest.mark.parametrize(
    "image, action, match",
    [
        (np.zeros(SHAPE, dtype=np.float32), np.zeros(ACTION_DIM), "uint8"),
        (np.zeros((3, 3, 2), dtype=np.uint8), np.zeros(ACTION_DIM), "shape"),
        (np.zeros(SHAPE, dtype=np.uint8).tolist(), np.zeros(ACTION_DIM), "uint8"),
        (np.zeros(SHAPE, dtype=np.uint8), np.zeros(ACTION_DIM + 1), "prev_action"),
    ],
)
def test_add_rejects_bad_shapes_and_dtypes(image, action, match):
    replay = Replay(capacity=5, image_shape=SHAPE, action_dim=ACTION_DIM)
    with pytest.raises(ValueError, match=match):
        replay.add(image, action, 0.0, is_first=True, is_terminal=False, is_last=False)
    assert len(replay) == 0


def test_add_rejects_broken_episode_invariants():
    replay = Replay(capacity=5, image_shape=SHAPE, action_dim=ACTION_DIM)
    zeros = np.zeros(ACTION_DIM)
    with pytest.raises(ValueError, match="is_first must be True"):
        replay.add(frame(0), zeros, 0.0, is_first=False, is_terminal=False, is_last=False)
    with pytest.raises(ValueError, match="zero prev_action"):
        replay.add(
            frame(0), np.ones(ACTION_DIM), 0.0, is_first=True, is_terminal=False, is_last=False
        )
    with pytest.raises(ValueError, match="zero prev_action"):
        replay.add(frame(0), zeros, 1.0, is_first=True, is_terminal=False, is_last=False)
    with pytest.raises(ValueError, match="must be a bool"):
        replay.add(frame(0), zeros, 0.0, is_first=1, is_terminal=False, is_last=False)
    replay.add(frame(0), zeros, 0.0, is_first=True, is_terminal=False, is_last=False)
    with pytest.raises(ValueError, match="previous row"):
        replay.add(frame(1), zeros, 0.0, is_first=True, is_terminal=False, is_last=False)
    with pytest.raises(ValueError, match="requires is_last"):
        replay.add(frame(1), zeros, 0.0, is_first=False, is_terminal=True, is_last=False)
    replay.add(frame(1), zeros, 0.0, is_first=False, is_terminal=False, is_last=True)
    with pytest.raises(ValueError, match="is_first must be True"):
        replay.add(frame(2), zeros, 0.0, is_first=False, is_terminal=False, is_last=False)
    assert len(replay) == 2


def test_constructor_and_sample_errors():
    with pytest.raises(ValueError, match="capacity"):
        Replay(capacity=0, image_shape=SHAPE, action_dim=ACTION_DIM)
    with pytest.raises(ValueError, match="action_dim"):
        Replay(capacity=5, image_shape=SHAPE, action_dim=0)
    with pytest.raises(ValueError, match="image_shape"):
        Replay(capacity=5, image_shape=(3, 4), action_dim=ACTION_DIM)
    replay = Replay(capacity=5, image_shape=SHAPE, action_dim=ACTION_DIM)
    fill(replay, [3])
    with pytest.raises(ValueError, match="only 3 rows stored"):
        replay.sample(2, 4)
    with pytest.raises(ValueError, match="seq_len"):
        replay.sample(2, 0)
    assert replay.sample(2, 3)["image"].shape == (2, 3, *SHAPE)
