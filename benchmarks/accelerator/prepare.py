"""Prepares, on a machine with network, what the accelerator check installs on a GPU machine without
network: the wheels of the packages its image lacks, for its Python, and (``--gl``) the GL loader
libraries of headless EGL rendering.

    python3 benchmarks/accelerator/prepare.py [--python 3.12] [--wheels .whl] [--gl .gl]
        [--have FREEZE] [--envs-only]

Wheels (``pip download --only-binary=:all:`` for CPython ``--python`` on manylinux x86-64, with
their dependencies): mujoco, dm-control and gymnasium as ``pyproject.toml`` pins them, rliable
(built here: 1.2.0 is published as source only; pure Python) and wandb. Dropped afterwards: the
wheels of projects the GPU machine already has, by ``--have`` (its ``pip freeze``) or else the
dependency closure, in this environment, of what the issue says a PyTorch image has (torch,
lightning, numpy, pandas, matplotlib, pytest, pytest-benchmark). ``--envs-only`` leaves out rliable
and wandb (the check builds no report and logs to CSV) to fit a 64 MiB transfer, with two wheels
slimmed for it: dm-control without ``dm_control/locomotion`` (39 MB of soccer and dog assets; the
suite never imports it) and mujoco without ``mujoco/experimental`` (16 MB; ``import mujoco`` never
loads it); their ``RECORD`` lists what is left.

GL (``--gl DIR``, Debian/Ubuntu ``apt-get download``): libEGL, libOpenGL and their glvnd loaders;
the GPU machine's NVIDIA driver provides the EGL vendor library, so MuJoCo renders on the GPU
(``check.py --gl DIR`` unpacks them).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

ENV_PACKAGES = ("mujoco==3.17.0", "dm-control==1.0.50", "gymnasium==1.4.0")
"""What the check's envs and slice need (the versions this repository is tested with)."""

REPORT_PACKAGES = ("rliable==1.2.0", "wandb")
"""The rest of wmbench's dependencies that a PyTorch image lacks."""

SOURCE_ONLY = ("rliable==1.2.0",)
"""Published without a wheel: built here (pure Python, so any Python 3 takes it)."""

IMAGE = ("torch", "lightning", "numpy", "pandas", "matplotlib", "pytest", "pytest-benchmark")
"""What the GPU machine's image has, by the issue (with everything these need)."""

SLIM = {"dm_control-": ("dm_control/locomotion/",), "mujoco-": ("mujoco/experimental/",)}
"""Wheel name prefix -> folders left out of it."""

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")

GL_PACKAGES = ("libegl1", "libglvnd0", "libopengl0", "libgl1", "libglx0", "libgles2")


def normalised(name: str) -> str:
    """A project name as wheel file names and ``pip freeze`` compare (PEP 503, ``-`` as ``_``)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def closure(names: tuple[str, ...]) -> set[str]:
    """``names`` and everything they require, transitively, as installed in this environment."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = normalised(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        with contextlib.suppress(metadata.PackageNotFoundError):
            for req in metadata.requires(name) or ():
                if "extra ==" not in req:
                    todo.append(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
    return seen


def download(requirements: tuple[str, ...], python: str, folder: Path) -> None:
    """``pip download`` of the requirements and their dependencies, binary wheels for
    ``python``; a wheel already in ``folder`` (a built one) counts."""
    folder.mkdir(parents=True, exist_ok=True)
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--find-links",
         str(folder), "--python-version", python, "--implementation", "cp", *platforms, "-d",
         str(folder), *requirements],
        check=True,
    )


def slim(wheel: Path, dropped: tuple[str, ...]) -> None:
    """Rewrites ``wheel`` without the files under ``dropped``, its ``RECORD`` listing the rest."""
    kept = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(kept, "w", zipfile.ZIP_DEFLATED) as dst:
        names = [n for n in src.namelist() if not n.startswith(dropped)]
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        lines = []
        for name in names:
            if name == record:
                continue
            data = src.read(name)
            dst.writestr(src.getinfo(name), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            lines.append(f"{name},sha256={digest},{len(data)}")
        dst.writestr(record, "\n".join([*lines, f"{record},,"]) + "\n")
    kept.replace(wheel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python (X.Y)")
    parser.add_argument("--wheels", type=Path, default=Path(".whl"), help="folder of wheels")
    parser.add_argument("--gl", type=Path, help="also download the GL loaders' .debs into this")
    parser.add_argument("--have", type=Path, help="the GPU machine's `pip freeze` (its projects "
                        "are left out); default: the closure of IMAGE here")
    parser.add_argument("--envs-only", action="store_true",
                        help="no rliable and wandb; dm-control and mujoco slimmed (64 MiB)")
    args = parser.parse_args()
    packages = ENV_PACKAGES if args.envs_only else ENV_PACKAGES + REPORT_PACKAGES
    built = [p for p in SOURCE_ONLY if p in packages]
    if built:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w",
                        str(args.wheels), *built], check=True)
    download(packages, args.python, args.wheels)
    have = (closure(IMAGE) if args.have is None else
            {normalised(re.split(r"[\s=@<>]", line, maxsplit=1)[0])
             for line in args.have.read_text().splitlines() if line.strip()})
    for wheel in sorted(args.wheels.glob("*.whl")):
        if normalised(wheel.name.split("-")[0]) in have:
            wheel.unlink()
        elif args.envs_only:
            for prefix, dropped in SLIM.items():
                if wheel.name.startswith(prefix):
                    slim(wheel, dropped)
    wheels = sorted(args.wheels.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    print(f"{args.wheels}: {len(wheels)} wheels, {total / 2**20:.1f} MiB: "
          f"{', '.join(w.name.split('-')[0] for w in wheels)}")
    if args.gl:
        args.gl.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", *GL_PACKAGES], cwd=args.gl, check=True)
        print(f"{args.gl}: {', '.join(sorted(p.name for p in args.gl.glob('*.deb')))}")


if __name__ == "__main__":
    main()
