"""``train.prefetch``: each batch is read from the replays in a background thread while the previous
update runs; the same batches, and so the same run, as without it; no row is added while a batch
is read."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_run_dict
from wmbench.agents.module import DreamerModule
from wmbench.configio import from_dict
from wmbench.data.replay import Replay, draw_windows, gather_windows
from wmbench.run_config import RunConfig
from wmbench.rundir import read_status
from wmbench.runtime.stream import StreamBase
from wmbench.runtime.train import train
from wmbench.types import Batch


def config(prefetch: bool, envs: int, mode: str = "sync") -> RunConfig:
    """toy:reach, 12 random steps, then one update per 8 steps (train ratio 1 at B·T = 8): 21
    updates over 180 steps."""
    data = tiny_run_dict()
    data["train"].update(env_frames=180, learning_starts=12, train_ratio=1, envs=envs,
                         replay_chunk=16, prefetch=prefetch, mode=mode)
    return from_dict(RunConfig, data)


def test_drawn_windows_gather_to_the_rows_sample_returns():
    replays = []
    for i in range(3):
        replay = Replay(40, (1, 2, 2), 1, seed=i)
        for t in range(30 + 5 * i):
            replay.add(np.full((1, 2, 2), 10 * i + t % 10, np.uint8), np.zeros(1, np.float32),
                       float(t), t == 0, False, False)
        replays.append(replay)
    twins = [Replay(40, (1, 2, 2), 1, seed=i) for i in range(3)]
    for twin, replay in zip(twins, replays, strict=True):
        twin.extend(replay.rows(0, replay.added), 0)
    rng, twin_rng = np.random.default_rng(7), np.random.default_rng(7)

    windows = draw_windows(replays, rng, 32, 4)
    assert sum(len(slots) for _, slots in windows) == 32
    batch = gather_windows(windows)
    # the windows of each replay, read by ``Replay.sample`` from the same generator states
    counts = twin_rng.multinomial(32, np.array([30, 35, 40]) / 105)
    expected = [twin.sample(n, 4) for twin, n in zip(twins, counts, strict=True) if n]
    for name, array in batch.items():
        np.testing.assert_array_equal(array, np.concatenate([e[name] for e in expected]))
    assert batch["is_first"][:, 0].all() and batch["image"].shape == (32, 4, 1, 2, 2)


@pytest.mark.parametrize("envs", [1, 3])
def test_prefetch_gives_the_run_of_reading_in_the_training_thread(tmp_path, monkeypatch, envs):
    readers: dict[bool, set[str]] = {True: set(), False: set()}
    received: set[type] = set()
    gather, step = Replay.gather, DreamerModule.training_step

    def recording_gather(self, slots):
        readers[prefetch].add(threading.current_thread().name)
        return gather(self, slots)

    def recording_step(self, batch, batch_idx):
        received.add(type(batch))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(Replay, "gather", recording_gather)
    monkeypatch.setattr(DreamerModule, "training_step", recording_step)
    runs = {}
    for prefetch in (True, False):
        runs[prefetch] = train(config(prefetch, envs), tmp_path / str(prefetch))
    assert runs[True]["updates"] == runs[False]["updates"] == 21
    assert readers[False] == {threading.main_thread().name}
    assert len(readers[True]) == 1 and next(iter(readers[True])).startswith("wmbench-batch")
    assert received == {Batch}  # Lightning's transfer resolved every pending batch

    def metrics(prefetch):
        return pd.read_csv(tmp_path / str(prefetch) / "metrics.csv").drop(columns="wall_time")

    pd.testing.assert_frame_equal(metrics(True), metrics(False))
    checkpoints = [tmp_path / str(p) / "checkpoints" / "last.ckpt" for p in (True, False)]
    params = [torch.load(path, weights_only=False)["state_dict"] for path in checkpoints]
    for name, value in params[0].items():
        torch.testing.assert_close(value, params[1][name], rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_no_row_is_added_while_a_batch_is_read(tmp_path, monkeypatch, mode):
    """Deterministic: each read is held until the training thread either waits for it
    (``_settle``, correct) or adds a row (the bug), so an overlap cannot hide behind a slow
    update."""
    reading, released = threading.Event(), threading.Event()
    overlaps = []
    batch, gather, add, settle = StreamBase._batch, Replay.gather, Replay.add, StreamBase._settle

    def marked_batch(self, windows, extra=None):
        released.clear()
        reading.set()  # in the training thread, before the read is submitted
        return batch(self, windows, extra)

    def held_gather(self, slots):
        try:
            released.wait(timeout=5.0)
            return gather(self, slots)
        finally:
            reading.clear()

    def released_settle(self):
        released.set()
        return settle(self)

    def checked_add(self, *row):
        overlaps.append(reading.is_set())
        released.set()
        return add(self, *row)

    monkeypatch.setattr(StreamBase, "_batch", marked_batch)
    monkeypatch.setattr(StreamBase, "_settle", released_settle)
    monkeypatch.setattr(Replay, "gather", held_gather)
    monkeypatch.setattr(Replay, "add", checked_add)
    assert train(config(True, 1, mode), tmp_path / "run")["updates"] == 21
    assert len(overlaps) > 100 and not any(overlaps)


def test_an_error_while_reading_a_batch_fails_the_run_with_it(tmp_path, monkeypatch):
    calls = []
    gather = Replay.gather

    def failing_gather(self, slots):
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            raise OSError("replay unreadable")
        return gather(self, slots)

    monkeypatch.setattr(Replay, "gather", failing_gather)
    with pytest.raises(OSError, match="replay unreadable"):
        train(config(True, 1), tmp_path / "run")
    assert calls[2].startswith("wmbench-batch")
    status = read_status(tmp_path / "run")
    assert status["status"] == "failed" and "replay unreadable" in status["error"]
    assert not any(t.name.startswith("wmbench-batch") for t in threading.enumerate())
