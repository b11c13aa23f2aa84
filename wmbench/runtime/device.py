"""Where a run computes and with which arithmetic: the one place that reads the machine's
accelerator, chooses the precision and compiles the learner.

``resolve`` turns ``train.accelerator``, ``train.precision``, ``train.compile`` and
``train.compile_mode`` (``wmbench.run_config.TrainConfig``) into a ``Placement`` before any compute;
every setting that cannot work on this machine is a ``ConfigError`` naming the fix (never a silent
fallback to the CPU). The ``Placement`` then gives the Lightning Trainer its options
(``trainer_options``), sets the process-wide TF32 switch for the run (``apply``), compiles the
learner (``compile_module``) and describes itself for the run's records (``record``: a comment in
``config.yaml``, ``status.json``, the result store's ``runs`` table and the report's cost table;
``wmbench.rundir.describe_device`` writes it as a line).

Rules:

- ``accelerator: auto`` is ``cuda`` where ``torch.cuda.is_available()``, else ``cpu``. A run uses
  one device: ``cuda:0`` of the devices ``CUDA_VISIBLE_DEVICES`` leaves visible (the suite runner
  sets it per worker, ``wmbench.suite.gpus``).
- ``precision: auto`` is ``bf16-mixed`` on a GPU with native bfloat16 (compute capability 8.0 or
  newer), else ``32-true``: on every CPU. bfloat16 autocast is up to 1.9x faster on CPUs with
  AMX or (AMD) AVX-512 BF16 and slower on others, but CPU autocast leaves more of the learner in
  bfloat16 than CUDA's (softmax, the heads' distributions), and a same-seed learning-cpu run in
  bf16 learned less than fp32 (``reports/speed.md``); ``train.precision=bf16-mixed`` still asks
  for it. A resumed run keeps the precision its checkpoint recorded, so one run never changes its
  arithmetic.
- TF32 (CUDA only): on for ``tf32`` and ``bf16-mixed`` (what autocast keeps in fp32), off for
  ``32-true``, the strict-fp32 reference the other precisions are compared with.
- Determinism: CPU runs use deterministic algorithms (a same-seed run is the same run; resume is
  exact). CUDA runs use cuDNN's autotuner and the fast kernels, some non-deterministic (atomic adds
  in convolution backward): a same-seed rerun matches only up to rounding, as in every GPU
  Dreamer.
- Compilation (``compile_module``): the same maths; compiled code draws its random numbers from
  torch's generator as eager code does (inductor's ``fallback_random``), so a compiled run draws
  the same samples.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from wmbench.configio import ConfigError
from wmbench.run_config import TrainConfig

RECOMPILE_LIMIT = 64
"""Compiled variants allowed per function: the learner compiles one network class (``MLP``) for
many heads and shapes (the update's, acting in ``train.envs`` envs, evaluation in one)."""


@functools.cache
def _cpuinfo(field: str) -> str | None:
    """The first ``field`` line's value in ``/proc/cpuinfo`` (None where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Placement:
    """A run's resolved device, precision and compilation (see the module docstring).

    Attributes:
        accelerator: ``cpu`` or ``cuda``.
        precision: ``32-true``, ``tf32`` (CUDA) or ``bf16-mixed``.
        compile: ``None`` (eager) or the ``torch.compile`` mode, ``default`` or
            ``reduce-overhead``.
    """

    accelerator: str
    precision: str
    compile: str | None = None

    @property
    def device(self) -> torch.device:
        """The torch device of the updates, imagination and acting."""
        return torch.device("cuda", 0) if self.accelerator == "cuda" else torch.device("cpu")

    def trainer_options(self) -> dict[str, Any]:
        """The Lightning Trainer's ``accelerator``, ``devices``, ``precision``, ``deterministic``
        and ``benchmark`` (TF32 is not a Lightning precision: it is ``32-true`` plus ``apply``)."""
        cuda = self.accelerator == "cuda"
        return {
            "accelerator": self.accelerator,
            "devices": 1,
            "precision": "bf16-mixed" if self.precision == "bf16-mixed" else "32-true",
            "deterministic": not cuda,
            "benchmark": cuda,
        }

    def apply(self) -> Callable[[], None]:
        """Sets the process-wide float32 precision of the run's matmuls and, on CUDA, cuDNN's
        convolutions (TF32 on CUDA for ``tf32`` and ``bf16-mixed``, else strict fp32); returns the
        function that restores the previous settings."""
        previous = torch.get_float32_matmul_precision()
        previous_conv = torch.backends.cudnn.allow_tf32
        tf32 = self.accelerator == "cuda" and self.precision in ("tf32", "bf16-mixed")
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        # cuDNN convolutions use TF32 by default whatever the matmul precision says: 32-true on
        # CUDA must switch them off too to be the strict-fp32 reference.
        if self.accelerator == "cuda":
            torch.backends.cudnn.allow_tf32 = tf32

        def restore() -> None:
            torch.set_float32_matmul_precision(previous)
            torch.backends.cudnn.allow_tf32 = previous_conv

        return restore

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The autocast that Lightning's precision puts around ``training_step``: bfloat16 for
        ``bf16-mixed``, none otherwise. For code that calls ``training_step`` itself (the
        benchmarks and the accelerator check)."""
        if self.precision != "bf16-mixed":
            yield
            return
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            yield

    def compile_module(self, module: torch.nn.Module, backend: str = "inductor") -> None:
        """Compiles the learner in place when ``compile`` is set (else does nothing).

        Compiled: every ``MLP``, ``ConvEncoder`` and ``ConvDecoder`` of ``module`` (heads, actor,
        critics, the objectives' networks, the image nets; ``nn.Module.compile``: parameters and
        state-dict names stay as they are) and the RSSM's one-step functions ``obs_step`` and
        ``img_step``, which the world model's filtering (T steps), the imagination rollout (H
        steps) and acting call once per step: the step's dozens of small kernels become a few
        fused ones.

        Args:
            module: a ``wmbench.agents.module.DreamerModule``.
            backend: ``torch.compile``'s backend: ``inductor`` (generated kernels; ``compile`` is
                its mode), or e.g. ``aot_eager`` (the same graphs, run by eager kernels: a quick
                check of the capture, without code generation).
        """
        if self.compile is None:
            return
        import torch._dynamo
        import torch._inductor.config

        from wmbench.nn.nets import MLP, ConvDecoder, ConvEncoder

        torch._inductor.config.fallback_random = True  # the eager random stream (module docstring)
        torch._dynamo.config.recompile_limit = max(
            torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT
        )
        options = {"backend": backend} | ({"mode": self.compile} if backend == "inductor" else {})
        for sub in module.modules():
            if isinstance(sub, (MLP, ConvEncoder, ConvDecoder)):
                sub.compile(**options)
        rssm = module.world_model.rssm
        rssm.img_step = torch.compile(rssm.img_step, **options)
        rssm.obs_step = torch.compile(rssm.obs_step, **options)
        # acting outside the updates marks its own CUDA-graph steps (``AgentPolicy.act``)
        module.cuda_graphs = backend == "inductor" and self.compile == "reduce-overhead"

    def callbacks(self) -> list[Callback]:
        """Lightning callbacks the placement needs: with ``reduce-overhead``, one that marks the
        start of each update for the CUDA graphs (``torch.compiler.cudagraph_mark_step_begin``)."""
        return [_MarkGraphStep()] if self.compile == "reduce-overhead" else []

    def record(self) -> dict[str, Any]:
        """The placement and the machine, for ``status.json`` and the result store.

        Returns:
            ``accelerator``, ``name`` (GPU or CPU model), ``count`` (GPUs visible, or CPUs this
            process may use), ``precision``, ``compile`` (``None`` or the mode), ``torch``,
            ``cuda`` (the CUDA version torch was built with; ``None`` for a CPU build),
            ``cuda_visible_devices`` (the variable's value, ``None`` if unset; see
            ``wmbench.suite.gpus``).
        """
        cuda = self.accelerator == "cuda"
        return {
            "accelerator": self.accelerator,
            "name": torch.cuda.get_device_name(0) if cuda else cpu_name(),
            "count": torch.cuda.device_count() if cuda else cpu_count(),
            "precision": self.precision,
            "compile": self.compile,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }


class _MarkGraphStep(Callback):
    """Tells the compiled CUDA graphs that a new update starts (their outputs of the last one may
    be overwritten)."""

    def on_train_batch_start(self, *args: Any) -> None:
        torch.compiler.cudagraph_mark_step_begin()


def _cuda_problem() -> str | None:
    """Why CUDA cannot be used here, or ``None`` if it can."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is built without CUDA"
    if not torch.cuda.is_available():
        return "torch finds no usable CUDA device (driver, CUDA_VISIBLE_DEVICES)"
    return None


def _compile_problem(accelerator: str, mode: str) -> str | None:
    """Why ``torch.compile`` in ``mode`` cannot work on ``accelerator`` here, or ``None``."""
    if mode == "reduce-overhead" and accelerator != "cuda":
        return "train.compile_mode=reduce-overhead captures CUDA graphs and needs CUDA"
    if accelerator == "cpu":
        compiler = os.environ.get("CXX") or next(
            (c for c in ("g++", "clang++", "c++") if shutil.which(c)), None
        )
        if not compiler or not shutil.which(compiler):
            return "compiling for the CPU needs a C++ compiler (g++ or clang++; or set CXX)"
    else:
        try:
            import triton  # noqa: F401
        except ImportError:
            return "compiling for CUDA needs triton (pip install triton)"
    return None


def resolve(train: TrainConfig, recorded_precision: str | None = None) -> Placement:
    """The placement of a run on this machine (see the module docstring for the rules).

    Args:
        train: the run's ``TrainConfig``.
        recorded_precision: the precision a resumed run's checkpoint recorded; ``auto`` resolves
            to it.

    Returns:
        The ``Placement``.

    Raises:
        ConfigError: ``cuda`` asked for where no GPU is usable; ``tf32`` on the CPU; ``compile``
            without what it needs (a C++ compiler on the CPU, triton on CUDA) or
            ``compile_mode=reduce-overhead`` off CUDA. Each names the fix.
    """
    accelerator = train.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if _cuda_problem() is None else "cpu"
    elif accelerator == "cuda" and (problem := _cuda_problem()):
        raise ConfigError(
            f"train.accelerator=cuda, but {problem}; set train.accelerator=cpu (or auto) to train "
            "on the CPU, or run on a machine with a GPU"
        )
    precision = train.precision
    if precision == "auto":
        if recorded_precision:
            precision = recorded_precision
        elif accelerator == "cuda":
            # native bfloat16 only (compute capability 8.0+); torch's default also counts emulation
            native = torch.cuda.is_bf16_supported(including_emulation=False)
            precision = "bf16-mixed" if native else "32-true"
        else:  # bf16 can be faster on a CPU but learned less (module docstring)
            precision = "32-true"
    if precision == "tf32" and accelerator != "cuda":
        raise ConfigError(
            "train.precision=tf32 is a CUDA precision (TF32 matrix units); on the CPU use 32-true, "
            "bf16-mixed or auto"
        )
    mode = train.compile_mode if train.compile else None
    if train.compile_mode != "default" and not train.compile:
        raise ConfigError(
            f"train.compile_mode={train.compile_mode} needs train.compile=true"
        )
    if mode and (problem := _compile_problem(accelerator, mode)):
        raise ConfigError(f"train.compile=true on {accelerator}: {problem}; or train.compile=false")
    return Placement(accelerator, precision, mode)


def rng_devices() -> list[int]:
    """The CUDA devices whose generators are in use (for ``torch.random.fork_rng``)."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
