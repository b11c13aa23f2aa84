"""Shared set-up for the speed benchmarks (pytest-benchmark; not part of the default test run).

Run: ``.venv/bin/python -m pytest benchmarks/ --benchmark-only``. Each benchmark records its
achieved GFLOP/s (FLOPs counted once with ``torch.utils.flop_counter``), CPU time / wall time and
its own figures into ``benchmark.extra_info``; a summary table is printed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from wmbench.agents.config import AgentConfig
from wmbench.agents.module import DreamerModule
from wmbench.configio import from_dict
from wmbench.runtime.harness import attached_module as attach

ACTION_DIM = 6  # walker's action size

# name -> (agent config, batch size B, sequence length T)
CONFIGS: dict[str, tuple[AgentConfig, int, int]] = {
    # Dream to Control, App. A: B 50 x T 50, deter 200, stoch 30, hidden 200, CNN depth 32,
    # heads 400 units, horizon 15 (the dreamer-v1 preset).
    "paper": (from_dict(AgentConfig, {"preset": "dreamer-v1"}), 50, 50),
    # DreamerV3 size S (the default preset) at its batch, B 16 x T 64.
    "v3-s": (AgentConfig(), 16, 64),
    # suites/smoke.yaml's networks and batch.
    "cpu-small": (
        from_dict(
            AgentConfig,
            {
                "world_model": {
                    "rssm": {"deter": 128, "stoch": 16, "hidden": 128},
                    "cnn_depth": 16,
                    "units": 200,
                },
                "actor_critic": {"units": 200, "actor_layers": 2, "critic_layers": 2},
            },
        ),
        16,
        32,
    ),
}

_RESULTS: list[dict[str, Any]] = []


def attached_module(config: AgentConfig, objective: str = "reconstruction") -> DreamerModule:
    """A CPU fp32 ``DreamerModule`` for walker's actions, ``training_step`` callable outside
    ``fit`` (``wmbench.runtime.harness.attached_module``)."""
    return attach(config, ACTION_DIM, objective)


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
