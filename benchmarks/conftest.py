"""Shared set-up for the speed benchmarks (pytest-benchmark; not part of the default test run).

Run: ``.venv/bin/python -m pytest benchmarks/ --benchmark-only``. Each benchmark records its
achieved GFLOP/s (FLOPs counted once with ``torch.utils.flop_counter``), CPU time / wall time and
its own figures into ``benchmark.extra_info``; a summary table is printed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch.utils.flop_counter import FlopCounterMode

from wmbench.agents.config import ActorCriticConfig, AgentConfig, RSSMConfig, WorldModelConfig
from wmbench.agents.module import DreamerModule
from wmbench.objectives import registry
from wmbench.testing import IMAGE_SHAPE

ACTION_DIM = 6  # walker's action size

# name -> (agent config, batch size B, sequence length T)
CONFIGS: dict[str, tuple[AgentConfig, int, int]] = {
    # Dream to Control, App. A: B 50 x T 50, deter 200, stoch 30, hidden 200, CNN depth 32,
    # heads 400 units, horizon 15 (the dataclass defaults).
    "paper": (AgentConfig(), 50, 50),
    # suites/smoke.yaml's networks and batch.
    "cpu-small": (
        AgentConfig(
            world_model=WorldModelConfig(
                rssm=RSSMConfig(deter=128, stoch=16, hidden=128), cnn_depth=16, units=200
            ),
            actor_critic=ActorCriticConfig(units=200, layers=2),
        ),
        16,
        32,
    ),
}

_RESULTS: list[dict[str, Any]] = []


def attached_module(config: AgentConfig, objective: str = "reconstruction") -> DreamerModule:
    """A ``DreamerModule`` wired to a bare Trainer, so ``training_step`` runs outside ``fit``."""
    cls = registry.get(objective)
    module = DreamerModule(config, IMAGE_SHAPE, ACTION_DIM, cls, cls.Config())
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(module)
    module.trainer = trainer
    trainer.strategy.optimizers = module.configure_optimizers()
    return module


def count_flops(fn: Callable[[], Any]) -> int:
    """Matmul/convolution FLOPs of one call of ``fn`` (forward and any backward it runs)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def run_benchmark(
    benchmark, fn: Callable[[], Any], rounds: int, flops: int | None = None, **info: Any
) -> None:
    """Time ``fn`` (one warm-up, then ``rounds`` rounds) and record GFLOP/s and CPU/wall.

    ``info`` values (e.g. frames per round) are stored in ``extra_info`` and the summary table.
    """
    cpu0, wall0 = time.process_time(), time.perf_counter()
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    stats = benchmark.stats.stats
    row = {
        "name": benchmark.name,
        "min_s": stats.min,
        "median_s": stats.median,
        "cpu/wall": cpu / wall,
        **info,
    }
    if flops is not None:
        row["gflop"] = flops / 1e9
        row["gflop/s"] = flops / 1e9 / stats.median
    benchmark.extra_info.update({k: v for k, v in row.items() if k != "name"})
    _RESULTS.append(row)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _RESULTS:
        return
    import pandas as pd

    terminalreporter.section("wmbench benchmark summary")
    table = pd.DataFrame(_RESULTS).set_index("name")
    terminalreporter.write_line(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    terminalreporter.write_line(table.to_string(float_format=lambda v: f"{v:.3g}"))
