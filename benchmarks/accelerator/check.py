"""The accelerator check: wmbench's speed on one GPU (or, with ``--cpu``, this CPU), in one command.

    python benchmarks/accelerator/check.py --wheels .whl --gl .gl --out OUT_DIR [options]

``--wheels DIR`` first installs every wheel of ``DIR`` without network (``pip install --no-index``;
``prepare.py`` makes the folder on a machine with network: mujoco, dm-control, gymnasium, rliable,
wandb and what they need beyond a PyTorch image), ``--gl DIR`` unpacks the GL loaders' ``.deb``
files of ``DIR`` (headless EGL; the NVIDIA driver brings the vendor library) for the processes that
render. Sections, in this order (``--only`` picks some); each writes its part of
``OUT_DIR/accelerator.json`` as soon as it is done, and anything that would overrun the time budget
(``--minutes``) is skipped with the reason:

- ``machine``: torch, CUDA, the GPU (name, memory, driver) or the CPU, and the measured peak of a
  large bfloat16 matrix product beside the datasheet's.
- ``update``: one learner update (world model, actor, critic) at the paper configuration (Dream to
  Control: ``agent.preset=dreamer-v1``, B 50 × T 50) and at DreamerV3 size S (the default preset,
  B 16 × T 64), reconstruction objective: eager fp32, eager bf16 autocast, compiled (bf16 on a GPU)
  and compiled with CUDA graphs (``compile_mode=reduce-overhead``: each compiled network and RSSM
  step replayed as a CUDA graph, not one graph of the whole update; CUDA only). Each: milliseconds
  (min and median of ``--repeats`` after ``--warmup`` updates, the device synchronised around
  each), the first update's seconds (compilation), replayed steps/s, GFLOP/s (FLOPs counted once by
  ``torch.utils.flop_counter``) against the measured and the datasheet bf16 peak, peak memory, and
  how far its losses and parameters after the warm-up are from eager fp32's on the same seed.
- ``data``: a batch's uint8 frames to the device (pageable, pinned, pinned without blocking) and
  their conversion to float there; replay sampling.
- ``envs``: env frames/s of ``dmc:walker-walk`` (action repeat 2, 64×64 standard pixels, random
  actions) with N envs in worker processes (``train.envs``), for each headless GL backend that
  works here, with the renderer OpenGL reports (the GPU's EGL, or Mesa's on the CPU).
- ``slice``: a ``dmc:walker-walk`` run with ``suites/dmc-vision.yaml``'s configuration, stopped
  after ``--slice-minutes`` (shortened to what the budget leaves): env frames/s, updates/s (whole
  slice and its second half), the share of wall time inside updates, GPU utilisation.
- ``pack`` (only when asked): 4 such slices at once on the one GPU, their updates/s against one
  alone (the issue's target: at most 30 % slower each).

Every number comes from this run; nothing is estimated. ``--smoke`` (or ``--quick``) shrinks
everything (tiny networks, ``aot_eager`` compilation, toy task for the slice) to check the script
itself in a minute or two, e.g. on a CPU: ``check.py --cpu --smoke --out /tmp/acc``; its timings
check the script, they measure nothing worth reporting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch._dynamo

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from wmbench.agents.config import AgentConfig  # noqa: E402
from wmbench.configio import from_dict  # noqa: E402
from wmbench.run_config import TrainConfig  # noqa: E402
from wmbench.runtime.device import Placement, cpu_name, resolve  # noqa: E402
from wmbench.runtime.harness import attached_module, count_flops  # noqa: E402
from wmbench.testing import random_batch  # noqa: E402

ACTION_DIM = 6  # walker
DATASHEET_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}
"""Dense bfloat16 tensor-core peak by the vendor's datasheets (a lead; ``machine`` measures)."""

TINY_AGENT = {
    "world_model": {"rssm": {"deter": 16, "stoch": 4, "classes": 4, "hidden": 16},
                    "cnn_depth": 4, "units": 16, "layers": 1},
    "actor_critic": {"units": 16, "actor_layers": 1, "critic_layers": 1, "imag_horizon": 3},
}
CONFIGS = {"paper": ({"preset": "dreamer-v1"}, 50, 50), "v3-s": ({}, 16, 64)}
SMOKE_CONFIGS = {"tiny": (TINY_AGENT, 2, 4)}
VARIANTS = ("fp32", "bf16", "compiled", "graphs")


class Report:
    """The check's results, written to ``accelerator.json`` after every change."""

    def __init__(self, out: Path) -> None:
        self.path = out / "accelerator.json"
        self.data: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                     "skipped": []}

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)

    def skip(self, what: str, why: str) -> None:
        print(f"skipped {what}: {why}", flush=True)
        self.put("skipped", [*self.data["skipped"], {"what": what, "why": why}])


class Clock:
    """The time budget: ``minutes`` from now."""

    def __init__(self, minutes: float) -> None:
        self.deadline = time.monotonic() + 60 * minutes

    def left(self) -> float:
        return self.deadline - time.monotonic()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def error_text(err: BaseException) -> str:
    lines = traceback.format_exception(err)
    return f"{type(err).__name__}: {err}"[:500] + " | " + "".join(lines[-3:])[-1500:]


# --- machine ------------------------------------------------------------------------------------
def matmul_tflops(device: torch.device, n: int, dtype: torch.dtype) -> float:
    """TFLOP/s of an ``n``³ matrix product on random data: median of 10 after 3 warm-ups."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    times = []
    for i in range(13):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e12


def machine(device: torch.device, smoke: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cpu": cpu_name(), "cpus": os.cpu_count(),
    }
    with contextlib.suppress(ImportError):
        import lightning

        info["lightning"] = lightning.__version__
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=props.total_memory / 1e9,
                    capability=f"{props.major}.{props.minor}",
                    multiprocessors=props.multi_processor_count)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            query = "--query-gpu=driver_version,clocks.sm,clocks.max.sm,power.limit"
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True,
                timeout=30).stdout.strip()
        datasheet = next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in props.name), None)
        info["datasheet_bf16_tflops"] = datasheet
        n = 2048 if smoke else 8192
    else:
        n = 512 if smoke else 2048
        info["datasheet_bf16_tflops"] = None
    info["matmul_n"] = n
    info["measured_bf16_tflops"] = matmul_tflops(device, n, torch.bfloat16)
    info["measured_fp32_tflops"] = matmul_tflops(device, n, torch.float32)
    return info


# --- update -------------------------------------------------------------------------------------
def variant_placement(variant: str, accelerator: str) -> Placement:
    """fp32 and bf16 eager; compiled (and graphs, CUDA only) at the precision ``auto`` picks here
    (``wmbench.runtime.device.resolve``: bf16 on a GPU with native bf16, fp32 on a CPU)."""
    auto = resolve(TrainConfig(accelerator=accelerator)).precision
    return {
        "fp32": Placement(accelerator, "32-true"),
        "bf16": Placement(accelerator, "bf16-mixed"),
        "compiled": Placement(accelerator, auto, "default"),
        "graphs": Placement(accelerator, auto, "reduce-overhead"),
    }[variant]


def run_updates(agent: AgentConfig, batch_size: int, seq_len: int, placement: Placement,
                warmup: int, repeats: int, backend: str) -> dict[str, Any]:
    """``warmup`` then ``repeats`` timed updates of a fresh learner (seed 0) on one random batch."""
    device = placement.device
    torch.manual_seed(0)
    module = attached_module(agent, ACTION_DIM, "reconstruction", placement, backend)
    batch = random_batch(batch_size, seq_len, ACTION_DIM, seed=0)
    batch = batch.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    graphs = placement.compile == "reduce-overhead"

    def update(i: int) -> dict | None:
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with placement.autocast():
            return module.training_step(batch, i)

    torch.manual_seed(1)
    row, first_s, times = None, 0.0, []
    restore = placement.apply()  # TF32 as a run of this placement trains (strict fp32 for fp32)
    try:
        for i in range(warmup + repeats):
            sync(device)
            start = time.perf_counter()
            out = update(i)
            sync(device)
            elapsed = time.perf_counter() - start
            if i == 0:
                first_s = elapsed
            if i == warmup - 1:
                row = out
            if i >= warmup:
                times.append(elapsed)
    finally:
        restore()
    params = torch.cat([p.detach().float().flatten().cpu() for p in module.parameters()])
    result = {
        "ms_min": 1e3 * min(times), "ms_median": 1e3 * statistics.median(times),
        "first_update_s": first_s, "steps_per_s": batch_size * seq_len / statistics.median(times),
        "_row": row, "_params": params, "_module": module, "_batch": batch,
    }
    if device.type == "cuda":
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    return result


def compared(result: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Relative differences of the warm-up's last logged losses and the final parameters."""
    row, ref = result["_row"] or {}, reference["_row"] or {}
    losses = {k: abs(row[k] - v) / max(abs(v), 1e-3) for k, v in ref.items()
              if k.startswith("train/loss/") and k in row}
    diff = (result["_params"] - reference["_params"]).norm() / reference["_params"].norm()
    return {"loss_rel_diff_max": max(losses.values(), default=None),
            "loss_rel_diff": losses, "param_rel_diff": float(diff)}


def update_section(args: argparse.Namespace, device: torch.device, report: Report, clock: Clock,
                   peaks: dict[str, Any]) -> None:
    configs = SMOKE_CONFIGS if args.smoke else CONFIGS
    variants = args.variants
    if device.type != "cuda" and "graphs" in variants:
        variants = [v for v in variants if v != "graphs"]
        report.skip("update graphs", "CUDA graphs need a GPU")
    results: list[dict[str, Any]] = []
    references: dict[str, dict[str, Any]] = {}
    flops: dict[str, int] = {}
    order = [(v, c) for v in variants for c in configs]  # every config eager first, then compiled
    for variant, name in order:
        data, batch_size, seq_len = configs[name]
        agent = from_dict(AgentConfig, {**data, "log_every": args.warmup, "grad_norm_every": 0})
        need = 40 if variant in ("fp32", "bf16") else 150
        entry: dict[str, Any] = {"config": name, "variant": variant, "batch": [batch_size, seq_len],
                                 "preset": agent.preset}
        if clock.left() < need:
            report.skip(f"update {name} {variant}", f"{clock.left():.0f} s left, {need} s needed")
            continue
        placement = variant_placement(variant, device.type)
        entry.update(precision=placement.precision, compile=placement.compile)
        print(f"update {name} {variant} ...", flush=True)
        try:
            result = run_updates(agent, batch_size, seq_len, placement, args.warmup, args.repeats,
                                 args.compile_backend)
            if variant == "fp32":
                references[name] = result
                module, batch = result["_module"], result["_batch"]
                flops[name] = count_flops(lambda: module.training_step(batch, 0))  # noqa: B023
            if name in references:
                entry.update(compared(result, references[name]))
            if name in flops:
                gflops = flops[name] / 1e9 / (result["ms_median"] / 1e3)
                entry.update(gflop=flops[name] / 1e9, gflop_per_s=gflops,
                             of_measured_bf16_peak=gflops / 1e3 / peaks["measured_bf16_tflops"])
                if peaks.get("datasheet_bf16_tflops"):
                    entry["of_datasheet_bf16_peak"] = gflops / 1e3 / peaks["datasheet_bf16_tflops"]
            entry.update({k: v for k, v in result.items() if not k.startswith("_")})
            if variant != "fp32":
                result.clear()
        except Exception as err:  # noqa: BLE001 - recorded; the check goes on
            entry["error"] = error_text(err)
        results.append(entry)
        report.put("update", results)
        torch._dynamo.reset()
        if device.type == "cuda":
            torch.cuda.empty_cache()


# --- data ---------------------------------------------------------------------------------------
def median_ms(fn: Any, device: torch.device, repeats: int = 20) -> float:
    """Median milliseconds of ``fn()``, the device synchronised around each call."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def data_section(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from wmbench.data.replay import Replay
    from wmbench.nn.nets import image_to_float

    out: dict[str, Any] = {}
    replay = Replay(20_000, (3, 64, 64), ACTION_DIM, seed=0)
    image = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    for i in range(20_000):
        replay.add(image, np.zeros(ACTION_DIM, np.float32), 0.0, i % 500 == 0, False,
                   i % 500 == 499)
    shapes = {"tiny": (2, 4)} if args.smoke else {"v3-s": (16, 64), "paper": (50, 50)}
    for name, (b, t) in shapes.items():
        frames = torch.randint(0, 256, (b, t, 3, 64, 64), dtype=torch.uint8)
        entry: dict[str, Any] = {"mb": frames.numel() / 1e6}
        entry["replay_sample_ms"] = median_ms(lambda: replay.sample(b, t), device)  # noqa: B023
        if device.type == "cuda":
            pinned, on_device = frames.pin_memory(), frames.to(device)
            entry.update(
                pageable_copy_ms=median_ms(lambda: frames.to(device), device),  # noqa: B023
                pin_ms=median_ms(frames.pin_memory, device),
                pinned_copy_ms=median_ms(
                    lambda: pinned.to(device, non_blocking=True), device  # noqa: B023
                ),
                to_float_on_device_ms=median_ms(
                    lambda: image_to_float(on_device), device  # noqa: B023
                ),
            )
        out[name] = entry
    return out


# --- envs ---------------------------------------------------------------------------------------
def probe_envs(backend: str, envs: int, seconds: float) -> dict[str, Any]:
    """In a fresh process with ``MUJOCO_GL=backend``: env frames/s of ``envs`` envs stepped
    together with random actions, and the OpenGL renderer."""
    from wmbench.configio import with_overrides
    from wmbench.envs.gl import ensure_mujoco_gl
    from wmbench.run_config import RunConfig
    from wmbench.runtime.env_pool import EnvPool

    ensure_mujoco_gl()
    import mujoco
    from OpenGL import GL

    context = mujoco.GLContext(64, 64)
    context.make_current()
    renderer = GL.glGetString(GL.GL_RENDERER).decode()
    context.free()
    cfg = with_overrides(RunConfig(), ["env.task=dmc:walker-walk", "env.action_repeat=2",
                                       f"train.envs={envs}"])
    started = time.perf_counter()
    pool = EnvPool(cfg)
    start_s = time.perf_counter() - started
    pool.seed(0)
    try:
        pool.reset(range(envs))
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            rows = pool.step({i: space.sample() for i, space in enumerate(pool.action_spaces)})
            steps += len(rows)
            pool.reset([i for i in range(envs) if pool.obs[i] is None])
        elapsed = time.perf_counter() - start
    finally:
        pool.close()
    return {"backend": backend, "renderer": renderer, "envs": envs, "start_s": start_s,
            "env_frames_per_s": steps * cfg.env.action_repeat / elapsed}


def gl_backends() -> list[str]:
    """EGL always (it fails in its probe if absent); OSMesa where its library is installed."""
    import ctypes.util

    return ["egl"] + (["osmesa"] if ctypes.util.find_library("OSMesa") else [])


def subprocess_json(args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Runs this script with ``args`` and returns the JSON of its last output line."""
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    return json.loads(lines[-1])


def envs_section(args: argparse.Namespace, report: Report, clock: Clock) -> None:
    results = []
    seconds = 3.0 if args.smoke else 15.0
    for backend in gl_backends():
        for n in args.envs:
            if clock.left() < seconds + 40:
                report.skip(f"envs {backend} N={n}", f"{clock.left():.0f} s left")
                continue
            print(f"envs {backend} N={n} ...", flush=True)
            env = dict(args.child_env, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
            try:
                results.append(subprocess_json(["--probe-envs", backend, str(n), str(seconds)],
                                               env, timeout=seconds + 300))
            except Exception as err:  # noqa: BLE001 - recorded; the check goes on
                results.append({"backend": backend, "envs": n, "error": error_text(err)})
            report.put("envs", results)


# --- slice --------------------------------------------------------------------------------------
class GpuUse:
    """Samples the GPU's utilisation (``nvidia-smi``, percent of time a kernel ran) twice a second
    in a thread; no samples where there is no ``nvidia-smi``."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.index = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-i", self.index]
        while not self.stop.wait(0.5):
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout
                self.samples.append((time.monotonic(), float(out.split()[0])))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                return

    def __enter__(self) -> GpuUse:
        if torch.cuda.is_available():
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()

    def mean(self, since: float = 0.0) -> float | None:
        values = [u for t, u in self.samples if t >= since]
        return statistics.fmean(values) if values else None


def slice_config(smoke: bool, cpu: bool) -> Any:
    """The slice's run: ``suites/dmc-vision.yaml``'s walker-walk reconstruction run (seed 0), or
    with ``smoke`` a tiny one on ``toy:reach`` in 2 envs; on the CPU with ``cpu``."""
    from wmbench.configio import with_overrides
    from wmbench.run_config import RunConfig
    from wmbench.suite.spec import load_suite

    if smoke:
        cfg = from_dict(RunConfig, {
            "objective": "reconstruction", "env": {"task": "toy:reach", "action_repeat": 1},
            "agent": TINY_AGENT,
            "train": {"env_frames": 100_000, "learning_starts": 16, "train_ratio": 8,
                      "batch_size": 2, "seq_len": 4, "envs": 2, "eval_episodes": 1,
                      "eval_every": 100_000, "replay_chunk": 64, "replay_capacity": 10_000},
        })
    else:
        _, runs = load_suite(REPO / "suites" / "dmc-vision.yaml")
        cfg = next(r.config for r in runs if r.config.env.task == "dmc:walker-walk"
                   and r.config.objective == "reconstruction" and r.config.seed == 0)
    where = ["train.accelerator=cpu"] if cpu else []
    return with_overrides(cfg, ["train.progress=false", "train.checkpoint_every=100000000", *where])


def probe_slice(seconds: float, out: Path, smoke: bool, cpu: bool) -> dict[str, Any]:
    """In a fresh process: trains the slice's run for ``seconds`` (then SIGTERM stops it with a
    checkpoint) and measures it."""
    import pandas as pd

    from wmbench.agents.module import DreamerModule
    from wmbench.errors import RunInterrupted
    from wmbench.runtime.train import quiet_libraries, train

    quiet_libraries()
    cfg = slice_config(smoke, cpu)
    cuda = cfg.train.accelerator != "cpu" and torch.cuda.is_available()
    inside = {"s": 0.0, "first": None}
    step = DreamerModule.training_step

    def timed_step(self, batch, batch_idx):  # the update's time, device synchronised after it
        start = time.perf_counter()
        row = step(self, batch, batch_idx)
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        inside["s"] += elapsed
        inside["first"] = inside["first"] if inside["first"] is not None else elapsed
        return row

    DreamerModule.training_step = timed_step
    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGTERM))
    started = time.monotonic()
    with GpuUse() as gpu:
        timer.start()
        try:
            train(cfg, out / "run")
        except RunInterrupted:
            pass
        finally:
            timer.cancel()
    wall = time.monotonic() - started
    if not (out / "run" / "metrics.csv").exists():
        return {"task": cfg.env.task, "seconds": wall,
                "error": "stopped before the run logged anything (still starting or prefilling)"}
    rows = pd.read_csv(out / "run" / "metrics.csv")
    updates = rows.dropna(subset=["updates"]) if "updates" in rows else rows.iloc[:0]
    status = json.loads((out / "run" / "status.json").read_text())
    result = {
        "task": cfg.env.task, "preset": cfg.agent.preset, "envs": cfg.train.envs,
        "device": status.get("device"), "seconds": wall,
        "env_frames": int(rows.env_frames.max()), "updates": int(updates.updates.max())
        if len(updates) else 0, "first_update_s": inside["first"],
        "update_share": inside["s"] / wall, "gpu_util_mean": gpu.mean(),
    }
    result["env_frames_per_s"] = result["env_frames"] / wall
    result["updates_per_s"] = result["updates"] / wall
    half = rows[rows.wall_time >= rows.wall_time.max() / 2]
    second = updates[updates.wall_time >= updates.wall_time.max() / 2] if len(updates) else updates
    if len(half) > 1:
        span = half.wall_time.max() - half.wall_time.min()
        result["second_half_env_frames_per_s"] = (half.env_frames.max()
                                                   - half.env_frames.min()) / span
    if len(second) > 1:
        span = second.wall_time.max() - second.wall_time.min()
        result["second_half_updates_per_s"] = (second.updates.max()
                                               - second.updates.min()) / span
        result["gpu_util_second_half"] = gpu.mean(started + rows.wall_time.max() / 2)
    return result


def slice_section(args: argparse.Namespace, out: Path, report: Report, clock: Clock) -> None:
    seconds = min(60 * args.slice_minutes, clock.left() - (30 if args.smoke else 90))
    if seconds < (5 if args.smoke else 60):
        report.skip("slice", f"{clock.left():.0f} s left")
        return
    print(f"slice {seconds:.0f} s ...", flush=True)
    flags = ["--smoke"] * args.smoke + ["--cpu"] * args.cpu
    try:
        result = subprocess_json(["--probe-slice", str(seconds), str(out / "slice"), *flags],
                                 args.child_env, timeout=seconds + 600)
    except Exception as err:  # noqa: BLE001 - recorded
        result = {"error": error_text(err)}
    report.put("slice", result)


def pack_section(args: argparse.Namespace, out: Path, report: Report, clock: Clock) -> None:
    """4 slices at once on the one device against the solo ``slice``'s updates/s."""
    seconds = min(60 * args.pack_minutes, clock.left() - 120)
    if seconds < 60 and not args.smoke:
        report.skip("pack", f"{clock.left():.0f} s left")
        return
    print(f"pack: 4 slices of {seconds:.0f} s at once ...", flush=True)
    flags = ["--smoke"] * args.smoke + ["--cpu"] * args.cpu
    procs = [subprocess.Popen([sys.executable, __file__, "--probe-slice", str(seconds),
                               str(out / f"pack-{i}"), *flags], env=args.child_env,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=seconds + 900)
        lines = stdout.strip().splitlines()
        results.append(json.loads(lines[-1]) if proc.returncode == 0 and lines
                       else {"error": stderr[-1500:]})
    solo = report.data.get("slice", {}).get("second_half_updates_per_s")
    each = [r.get("second_half_updates_per_s") for r in results]
    report.put("pack", {"runs": results, "solo_updates_per_s": solo, "each_updates_per_s": each,
                        "slowdown": [1 - e / solo if e and solo else None for e in each]})


# --- main ---------------------------------------------------------------------------------------
def prepare(wheels: Path | None, gl: Path | None, out: Path) -> dict[str, str]:
    """Installs the wheels of ``wheels`` (no network) and unpacks the ``.deb`` files of ``gl``
    into ``out/gl``; returns the environment of the processes that render and train (the unpacked
    libraries first on ``LD_LIBRARY_PATH``)."""
    env = dict(os.environ)
    if wheels is not None:
        found = sorted(str(w) for w in wheels.glob("*.whl"))
        print(f"installing {len(found)} wheels from {wheels} ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links",
                        str(wheels), *found], check=True)
    if gl is not None:
        root = out / "gl"
        for deb in sorted(gl.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        libs = [str(d) for d in sorted(root.glob("usr/lib/*-linux-gnu"))]
        env["LD_LIBRARY_PATH"] = ":".join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
    return env


def summary(data: dict[str, Any]) -> str:
    lines = ["", "== accelerator check =="]
    m = data.get("machine", {})
    lines.append(f"{m.get('gpu') or m.get('cpu')}; torch {m.get('torch')}, CUDA {m.get('cuda')}; "
                 f"matmul measured {1e3 * m.get('measured_bf16_tflops', 0):.0f} GFLOP/s bf16, "
                 f"{1e3 * m.get('measured_fp32_tflops', 0):.0f} fp32 (datasheet bf16 "
                 f"{m.get('datasheet_bf16_tflops')} TFLOP/s)")
    for u in data.get("update", []):
        if "error" in u:
            lines.append(f"update {u['config']:6s} {u['variant']:8s} ERROR {u['error'][:150]}")
            continue
        lines.append(
            f"update {u['config']:6s} {u['variant']:8s} {u['ms_median']:9.1f} ms median "
            f"({u['ms_min']:.1f} min), first {u['first_update_s']:.1f} s, "
            f"{u.get('gflop_per_s', float('nan')):8.1f} GFLOP/s, "
            f"loss diff vs fp32 {u.get('loss_rel_diff_max')}")
    for e in data.get("envs", []):
        lines.append(f"envs {e['backend']} N={e['envs']}: "
                     + (f"{e['env_frames_per_s']:.0f} frames/s ({e['renderer']})"
                        if "error" not in e else f"ERROR {e['error'][:150]}"))
    for key in ("slice", "pack", "data"):
        if key in data:
            lines.append(f"{key}: {json.dumps(data[key], default=str)[:600]}")
    for s in data.get("skipped", []):
        lines.append(f"skipped {s['what']}: {s['why']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for accelerator.json and the runs")
    parser.add_argument("--only", default="machine,update,data,envs,slice",
                        help="comma-separated sections (machine,update,data,envs,slice,pack)")
    parser.add_argument("--minutes", type=float, default=9.0, help="time budget of the check")
    parser.add_argument("--slice-minutes", type=float, default=10.0)
    parser.add_argument("--pack-minutes", type=float, default=3.0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--warmup", type=int, default=10, help="updates before the timed ones")
    parser.add_argument("--repeats", type=int, default=20, help="timed updates")
    parser.add_argument("--envs", default="1,4,8,16", help="env counts of the envs section")
    parser.add_argument("--compile-backend",
                        help="torch.compile backend of the compiled variants: inductor (default), "
                        "aot_eager (quick; the default of --smoke)")
    parser.add_argument("--wheels", type=Path, help="install the wheels of this folder first")
    parser.add_argument("--gl", type=Path, help="unpack the GL loaders' .debs of this folder")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even with a GPU")
    parser.add_argument("--smoke", "--quick", action="store_true",
                        help="tiny sizes: checks the script")
    parser.add_argument("--probe-envs", nargs=3, metavar=("BACKEND", "N", "SECONDS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--probe-slice", nargs=2, metavar=("SECONDS", "DIR"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_envs:
        backend, n, seconds = args.probe_envs
        print(json.dumps(probe_envs(backend, int(n), float(seconds))))
        return
    if args.probe_slice:
        seconds, out = args.probe_slice
        print(json.dumps(probe_slice(float(seconds), Path(out), args.smoke, args.cpu),
                         default=str))
        return
    if args.out is None:
        parser.error("--out is required")
    args.variants = args.variants.split(",")
    args.envs = [int(n) for n in args.envs.split(",")]
    args.compile_backend = args.compile_backend or ("aot_eager" if args.smoke else "inductor")
    if args.smoke:
        args.warmup, args.repeats = min(args.warmup, 2), min(args.repeats, 3)
        args.slice_minutes, args.pack_minutes = min(args.slice_minutes, 1.0), 1.0
        args.envs = [n for n in args.envs if n <= 2] or [1]
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no usable GPU here; --cpu runs the check on the CPU")
    device = torch.device("cpu") if args.cpu else torch.device("cuda", 0)
    args.out.mkdir(parents=True, exist_ok=True)
    args.child_env = prepare(args.wheels, args.gl, args.out)
    clock, report = Clock(args.minutes), Report(args.out)
    report.put("options", {k: v for k, v in vars(args).items()
                           if not k.startswith("probe") and k != "child_env"})
    sections = args.only.split(",")
    started = time.monotonic()
    try:
        peaks = machine(device, args.smoke)
        report.put("machine", peaks)
        if "update" in sections:
            update_section(args, device, report, clock, peaks)
        if "data" in sections:
            report.put("data", data_section(args, device))
        if "envs" in sections:
            envs_section(args, report, clock)
        if "slice" in sections:
            slice_section(args, args.out, report, clock)
        if "pack" in sections:
            pack_section(args, args.out, report, clock)
    finally:
        report.put("elapsed_s", time.monotonic() - started)
        print(summary(report.data), flush=True)


if __name__ == "__main__":
    main()
