"""Placing a suite's runs on GPUs (``wmbench suite run --gpus-per-run F``).

A run trains on one GPU; ``F`` in (0, 1] is the share of a GPU it gets, so ``1 / F`` runs share one
(0.25: four small runs on each GPU). The local launcher's worker k sees only its GPU:
``CUDA_VISIBLE_DEVICES`` is set in the worker before it starts CUDA, the workers filling the visible
GPUs in order (``worker_devices``). The Ray launcher asks Ray for ``num_gpus=F`` per run task
(``ray_resources``), and Ray sets ``CUDA_VISIBLE_DEVICES`` of the task. Rendering is not placed:
MuJoCo's EGL renders on EGL device 0 unless ``MUJOCO_EGL_DEVICE_ID`` says otherwise. No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from wmbench.configio import ConfigError
from wmbench.run_config import RunConfig


def visible_gpus(environ: Mapping[str, str], count: Callable[[], int]) -> list[str]:
    """The GPUs this process may use: the ids in ``CUDA_VISIBLE_DEVICES`` if it is set, else
    ``0 .. count() - 1``.

    Args:
        environ: the environment (``os.environ``).
        count: number of CUDA devices (``torch.cuda.device_count``), called only when
            ``CUDA_VISIBLE_DEVICES`` is unset.
    """
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [item.strip() for item in listed.split(",") if item.strip()]
    return [str(i) for i in range(count())]


def runs_per_gpu(gpus_per_run: float) -> int:
    """How many runs share one GPU: ``floor(1 / gpus_per_run)``.

    Raises:
        ConfigError: ``gpus_per_run`` is not in (0, 1].
    """
    if not 0 < gpus_per_run <= 1:
        raise ConfigError(
            f"--gpus-per-run={gpus_per_run}: a run trains on one GPU, so give a share of one in "
            "(0, 1], e.g. 0.25 to pack 4 runs on each GPU"
        )
    return math.floor(1 / gpus_per_run + 1e-9)


def worker_devices(gpus: list[str], workers: int, gpus_per_run: float) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` of each of ``workers`` local workers: worker k gets
    ``gpus[k // runs_per_gpu(gpus_per_run)]``.

    Args:
        gpus: the GPUs to place on (``visible_gpus``).
        workers: local worker processes, one run at a time each.
        gpus_per_run: share of a GPU per run, in (0, 1].

    Returns:
        One GPU id per worker, e.g. ``["0", "0", "1", "1"]`` for 4 workers at 0.5 on GPUs 0, 1.

    Raises:
        ConfigError: ``gpus_per_run`` out of range, no GPU visible, or more workers than the GPUs
            hold at that share (names the fix).
    """
    per_gpu = runs_per_gpu(gpus_per_run)
    if not gpus:
        raise ConfigError(
            "--gpus-per-run needs GPUs, and none is visible here (CUDA_VISIBLE_DEVICES, driver); "
            "drop --gpus-per-run to train on the CPU"
        )
    if workers > len(gpus) * per_gpu:
        raise ConfigError(
            f"--workers {workers} at --gpus-per-run {gpus_per_run} needs "
            f"{math.ceil(workers / per_gpu)} GPUs, and {len(gpus)} are visible: use at most "
            f"--workers {len(gpus) * per_gpu}, or a smaller --gpus-per-run"
        )
    return [gpus[k // per_gpu] for k in range(workers)]


def ray_resources(cfg: RunConfig, gpus_per_run: float | None) -> dict[str, float]:
    """What a run's Ray task reserves: ``num_cpus`` = ``train.threads`` (1 if 0) and
    ``num_gpus`` = ``gpus_per_run`` (0 without).

    Raises:
        ConfigError: ``gpus_per_run`` is not in (0, 1].
    """
    if gpus_per_run is not None:
        runs_per_gpu(gpus_per_run)
    return {"num_cpus": cfg.train.threads or 1, "num_gpus": gpus_per_run or 0}
