"""The speed options compute what eager fp32 computes, on the same seed: a compiled learner
(``train.compile``; CPU here) and bfloat16 autocast (``train.precision``).

The default run checks the compiled graphs with ``aot_eager`` (dynamo's capture and AOT autograd,
run by eager kernels, ≈ 10 s); ``pytest -m slow`` also generates inductor's C++ kernels (minutes on
a busy 2-core machine) and trains a compiled run end to end.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import tiny_agent_config, tiny_run_dict
from wmbench.configio import from_dict
from wmbench.run_config import RunConfig
from wmbench.runtime.device import Placement
from wmbench.runtime.harness import attached_module
from wmbench.runtime.train import train
from wmbench.testing import random_batch

UPDATES = 3


def updates(placement: Placement, backend: str = "inductor") -> tuple[list[dict], dict]:
    """``UPDATES`` updates of a tiny reconstruction learner (encoder, decoder, RSSM, heads) on one
    batch from the same initialisation and seed; returns each update's metrics row and the final
    parameters."""
    torch.manual_seed(0)
    module = attached_module(tiny_agent_config(), 2, "reconstruction", placement, backend)
    batch = random_batch(2, 4, 2)
    torch.manual_seed(1)
    rows = []
    for i in range(UPDATES):
        with placement.autocast():
            rows.append(module.training_step(batch, i))
    return rows, {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_close(rows: list[dict], params: dict, reference: tuple[list[dict], dict], rtol: float,
                 atol: float) -> None:
    ref_rows, ref_params = reference
    for row, ref in zip(rows, ref_rows, strict=True):
        for name in ("train/loss/world_model", "train/loss/actor", "train/loss/critic",
                     "train/loss/objective/image", "train/kl"):
            assert row[name] == pytest.approx(ref[name], rel=rtol, abs=atol), name
    for name, value in ref_params.items():
        torch.testing.assert_close(params[name].float(), value.float(), rtol=rtol, atol=atol,
                                   msg=name)


@pytest.fixture(scope="module")
def eager() -> tuple[list[dict], dict]:
    return updates(Placement("cpu", "32-true"))


def test_compiled_updates_equal_eager_updates(eager):
    """Same samples (inductor's ``fallback_random``; aot_eager draws as eager does) and the same
    graphs: equal up to float rounding."""
    assert_close(*updates(Placement("cpu", "32-true", "default"), "aot_eager"), eager, 1e-5, 1e-6)


def test_bf16_autocast_updates_stay_close_to_fp32(eager):
    """bfloat16 matrix products (8 bits of mantissa) on the same seed: each loss and parameter of
    the first updates within a few per cent of fp32 (Adam's first steps are sign-like, so the
    parameters move alike)."""
    rows, params = updates(Placement("cpu", "bf16-mixed"))
    assert_close(rows, params, eager, rtol=0.05, atol=2e-3)


@pytest.mark.slow
def test_inductor_compiled_updates_and_run_equal_eager(eager, tmp_path):
    """Inductor's generated C++ kernels: the updates, and a whole compiled ``train`` run's metrics,
    equal eager ones up to float rounding."""
    assert_close(*updates(Placement("cpu", "32-true", "default")), eager, 1e-4, 1e-5)
    data = tiny_run_dict(objective="reconstruction")
    data["train"]["precision"] = "32-true"
    runs = {}
    for compiled in (False, True):
        data["train"]["compile"] = compiled
        train(from_dict(RunConfig, data), tmp_path / str(compiled))
        runs[compiled] = pd.read_csv(tmp_path / str(compiled) / "metrics.csv").drop(
            columns="wall_time"
        )
    pd.testing.assert_frame_equal(runs[True], runs[False], rtol=1e-4, atol=1e-5)
