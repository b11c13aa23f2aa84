"""Tests for wmbench.data.replay_disk.ReplayDisk and the Replay methods it uses (rows, extend)."""

from __future__ import annotations

import numpy as np
import pytest

from test_replay import ACTION_DIM, SHAPE, decode, fill
from wmbench.data.replay import FIELDS, Replay
from wmbench.data.replay_disk import ReplayDisk


def filled(tmp_path, episode_lengths, capacity=10, chunk_rows=4):
    """A replay filled through a ReplayDisk that flushes as rows arrive, like the training stream.
    """
    replay = Replay(capacity=capacity, image_shape=SHAPE, action_dim=ACTION_DIM, seed=3)
    disk = ReplayDisk(tmp_path / "replay", chunk_rows)
    original_add = replay.add

    def add(*args, **kwargs):
        original_add(*args, **kwargs)
        disk.maybe_flush(replay)

    replay.add = add
    fill(replay, episode_lengths)
    return replay, disk


def test_chunks_are_written_as_the_replay_fills_and_evicted_ones_are_deleted(tmp_path):
    replay, disk = filled(tmp_path, [6, 9, 10])  # 25 rows, capacity 10: rows 15..24 stored
    assert [(start, stop) for start, stop, _ in disk.files()] == [(12, 16), (16, 20), (20, 24)]
    assert disk.written == 24  # row 24 is pending until the next chunk or flush
    disk.flush(replay)
    assert [(start, stop) for start, stop, _ in disk.files()] == [
        (12, 16),
        (16, 20),
        (20, 24),
        (24, 25),
    ]
    assert disk.stored_rows() == 13


def test_restore_rebuilds_the_same_rows_and_samples_even_mid_episode(tmp_path):
    replay, disk = filled(tmp_path, [6, 9, 10], capacity=8)  # rows 17..24 stored
    disk.flush(replay)
    restored = Replay(capacity=8, image_shape=SHAPE, action_dim=ACTION_DIM, seed=99)
    ReplayDisk(tmp_path / "replay", 4).restore(restored, 25)
    assert (restored.added, len(restored)) == (25, 8)
    for name in FIELDS:
        np.testing.assert_array_equal(restored.rows(17, 25)[name], replay.rows(17, 25)[name])
    np.testing.assert_array_equal(decode(restored.rows(17, 25)["image"]), np.arange(17, 25))
    assert not restored.rows(17, 18)["is_first"][0]  # starts mid-episode: row 17 is the 3rd of 10


def test_restored_replay_samples_exactly_like_the_original(tmp_path):
    replay, disk = filled(tmp_path, [6, 9, 10])
    disk.flush(replay)
    restored = Replay(capacity=10, image_shape=SHAPE, action_dim=ACTION_DIM, seed=99)
    ReplayDisk(tmp_path / "replay", 4).restore(restored, 25)
    restored.set_rng_state(replay.rng_state())
    expected, got = replay.sample(4, 5), restored.sample(4, 5)
    for name in FIELDS:
        np.testing.assert_array_equal(got[name], expected[name])
    # Appending continues the episode invariant from the restored rows.
    restored.add(np.zeros(SHAPE, np.uint8), np.zeros(ACTION_DIM), 0.0, True, False, False)
    assert restored.added == 26


def test_restore_cuts_back_rows_written_after_the_checkpoint(tmp_path):
    replay, disk = filled(tmp_path, [6, 9], capacity=100)  # 15 rows; files 0-4, 4-8, 8-12
    restored = Replay(capacity=100, image_shape=SHAPE, action_dim=ACTION_DIM)
    fresh = ReplayDisk(tmp_path / "replay", 4)
    fresh.restore(restored, 10)  # a checkpoint taken at 10 rows
    assert restored.added == 10
    np.testing.assert_array_equal(decode(restored.rows(0, 10)["image"]), np.arange(10))
    assert [(start, stop) for start, stop, _ in fresh.files()] == [(0, 4), (4, 8), (8, 10)]
    assert fresh.written == 10


def test_restore_names_missing_rows(tmp_path):
    replay, disk = filled(tmp_path, [6, 9], capacity=100)
    disk.files()[1][2].unlink()  # rows 4..8
    with pytest.raises(
        RuntimeError, match="miss rows from stream index 4 .*delete it and start the run over"
    ):
        ReplayDisk(tmp_path / "replay", 4).restore(Replay(100, SHAPE, ACTION_DIM), 12)


def test_extend_rejects_rows_that_break_the_episode_invariant():
    source = Replay(capacity=20, image_shape=SHAPE, action_dim=ACTION_DIM)
    fill(source, [3, 4])
    rows = source.rows(0, 7)
    rows["is_first"][4] = True  # row 4 does not follow a last row
    with pytest.raises(ValueError, match="is_first must be True exactly on the rows that follow"):
        Replay(capacity=20, image_shape=SHAPE, action_dim=ACTION_DIM).extend(rows, 0)
    with pytest.raises(ValueError, match="are not all stored"):
        source.rows(5, 9)


def test_restore_after_a_restore_that_was_killed_midway(tmp_path):
    """A kill between writing the cut-back file and deleting the original leaves both; rows load
    once."""
    replay, disk = filled(tmp_path, [6, 9], capacity=100)  # files 0-4, 4-8, 8-12
    with np.load(disk.files()[2][2]) as data:
        disk._write(
            8, 10, {name: data[name][:2] for name in FIELDS}
        )  # the cut-back copy for 10 rows
    restored = Replay(capacity=100, image_shape=SHAPE, action_dim=ACTION_DIM)
    ReplayDisk(tmp_path / "replay", 4).restore(restored, 10)
    np.testing.assert_array_equal(decode(restored.rows(0, 10)["image"]), np.arange(10))
    assert [(start, stop) for start, stop, _ in disk.files()] == [(0, 4), (4, 8), (8, 10)]
