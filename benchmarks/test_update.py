"""Benchmarks (a)-(d) and (g): one full update; its imagination, RSSM-observe and convolutional
parts alone."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
import torch

from conftest import ACTION_DIM, CONFIGS, attached_module, run_benchmark
from wmbench.nn.nets import gaussian_nll, image_to_float
from wmbench.runtime.harness import count_flops
from wmbench.testing import random_batch

PRECISIONS = {
    "fp32": contextlib.nullcontext,
    "bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
}


def _update_fn(config_name: str, objective: str, precision: str):
    config, batch_size, seq_len = CONFIGS[config_name]
    module = attached_module(config, objective)
    batch = random_batch(batch_size, seq_len, ACTION_DIM)

    def update() -> None:
        with PRECISIONS[precision]():
            module.training_step(batch, 0)

    return update


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize(
    ("config_name", "objective", "rounds"),
    [
        ("paper", "reconstruction", 3),
        ("cpu-small", "reconstruction", 10),
        ("cpu-small", "reward", 10),
        ("cpu-small", "contrastive", 10),
    ],
)
def test_update(benchmark, config_name: str, objective: str, rounds: int, precision: str) -> None:
    """(a), (b): world model + actor + critic update on one replayed batch."""
    update = _update_fn(config_name, objective, precision)
    run_benchmark(benchmark, update, rounds, flops=count_flops(update))


def test_update_peak_memory(benchmark) -> None:
    """Peak memory of two paper-configuration updates in a fresh process (target ≤ 3 GB).

    ``update_gb`` is the peak resident memory minus the resident memory just before the first
    update (model, optimizers and batch already built): what the update itself needs. ``process_gb``
    is the whole process's peak, interpreter and libraries included.
    """
    code = (
        "import resource, sys; sys.path.insert(0, 'benchmarks');from test_update import "
        "_update_fn; f = _update_fn('paper', 'reconstruction', 'fp32');before = "
        "int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize() / 1024; f(); "
        "f();print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out: dict[str, float] = {}

    def child() -> None:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        before_kib, peak_kib = map(float, proc.stdout.split()[-2:])  # ru_maxrss is in KiB on Linux
        out.update(process_gb=peak_kib * 1024 / 1e9, update_gb=(peak_kib - before_kib) * 1024 / 1e9)

    benchmark.pedantic(child, rounds=1, iterations=1)
    benchmark.extra_info.update(out)
    print(json.dumps(out))
    assert out["update_gb"] <= 3.0, (
        f"a paper-configuration update needs {out['update_gb']:.2f} GB, over the 3 GB target"
    )


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_imagination(benchmark, config_name: str) -> None:
    """(c): H-step imagined rollout from all B·T posterior states, forward and actor backward."""
    config, batch_size, seq_len = CONFIGS[config_name]
    module = attached_module(config)
    start = module.world_model.rssm.initial(batch_size * seq_len)
    start = start.map(lambda x: x + torch.randn_like(x))

    def rollout() -> None:
        _, ret, weight, entropy, _ = module._imagine(start)
        module.actor_critic.actor_loss(ret, weight, entropy)[0].backward()

    run_benchmark(benchmark, rollout, rounds=5, flops=count_flops(rollout))


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_observe(benchmark, config_name: str) -> None:
    """(d): RSSM posterior filtering over ``[B, T]`` embeddings, forward and backward of the KL."""
    config, batch_size, seq_len = CONFIGS[config_name]
    rssm = attached_module(config).world_model.rssm
    embed_dim = rssm.post_net[0].in_features - config.world_model.rssm.deter
    embed = torch.randn(batch_size, seq_len, embed_dim)
    action = torch.rand(batch_size, seq_len, ACTION_DIM) * 2 - 1
    is_first = torch.zeros(batch_size, seq_len, dtype=torch.bool)
    is_first[:, 0] = True

    def observe() -> None:
        post, prior = rssm.observe(embed, action, is_first)
        rssm.kl_loss(post, prior, config.world_model.kl.free_nats)[0].mean().backward()

    run_benchmark(benchmark, observe, rounds=5, flops=count_flops(observe))


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_convolutions(benchmark, config_name: str) -> None:
    """(g): the image encoder and the reconstruction decoder alone on all ``B·T`` frames, forward
    and backward of the decoder's Gaussian NLL: the convolutional part of a reconstruction update.
    """
    config, batch_size, seq_len = CONFIGS[config_name]
    world_model = attached_module(config).world_model
    image = random_batch(batch_size, seq_len, ACTION_DIM).image
    project = torch.nn.Linear(world_model.encoder.embed_dim, world_model.dims.feat)

    def convolutions() -> None:
        feat = project(world_model.encoder(image))
        mean = world_model.objective.decoder(feat)
        gaussian_nll(mean, image_to_float(image), event_dims=3).mean().backward()

    run_benchmark(benchmark, convolutions, rounds=5, flops=count_flops(convolutions))
