"""Prepares, on a machine with network, what the accelerator check installs on a GPU machine without
network: the wheels of the packages its image lacks, for its Python, and (``--gl``) the GL loader
libraries of headless EGL rendering.

    python3 benchmarks/accelerator/prepare.py [--python 3.12] [--wheels .whl] [--gl .gl]

Wheels (``pip download --no-deps --only-binary=:all:`` for CPython ``--python`` on manylinux
x86-64): mujoco and dm-control as ``pyproject.toml`` pins them, gymnasium, and what they need beyond
a PyTorch image's packages (dm-env, dm-tree, labmaze, glfw, PyOpenGL, Farama-Notifications). Two are
slimmed to fit a 64 MiB transfer: dm-control without ``dm_control/locomotion`` (39 MB of soccer and
dog assets; the suite never imports it) and mujoco without ``mujoco/experimental`` (16 MB; ``import
mujoco`` never loads it); their ``RECORD`` lists what is left. rliable (no wheel published) and wandb
(20 MB) stay behind: the check builds no report and logs to CSV.

GL (``--gl DIR``, Debian/Ubuntu ``apt-get download``): libEGL, libOpenGL and their glvnd loaders;
the GPU machine's NVIDIA driver provides the EGL vendor library, so MuJoCo renders on the GPU
(``run.sh`` unpacks them).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

WHEELS = (
    "mujoco==3.17.0",
    "dm-control==1.0.50",
    "gymnasium==1.4.0",
    "farama-notifications==0.0.6",
    "dm-env==1.6",
    "dm-tree==0.1.10",
    "labmaze==1.0.6",
    "glfw==2.11.0",
    "pyopengl==3.1.10",
)
"""The packages (with the versions this repository is tested with) that the GPU image lacks."""

SLIM = {"dm_control-": ("dm_control/locomotion/",), "mujoco-": ("mujoco/experimental/",)}
"""Wheel name prefix -> folders left out of it."""

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")

GL_PACKAGES = ("libegl1", "libglvnd0", "libopengl0", "libgl1", "libglx0", "libgles2")


def download(requirements: tuple[str, ...], python: str, folder: Path) -> None:
    """``pip download`` of each requirement, no dependencies, binary wheels for ``python``."""
    folder.mkdir(parents=True, exist_ok=True)
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--python-version", python, "--implementation", "cp", *platforms, "-d", str(folder),
         *requirements],
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
    parser.add_argument("--gl", type=Path, help="also download the GL loader .debs into this folder")
    args = parser.parse_args()
    download(WHEELS, args.python, args.wheels)
    for wheel in sorted(args.wheels.glob("*.whl")):
        for prefix, dropped in SLIM.items():
            if wheel.name.startswith(prefix):
                slim(wheel, dropped)
    total = sum(w.stat().st_size for w in args.wheels.glob("*.whl"))
    print(f"{args.wheels}: {len(list(args.wheels.glob('*.whl')))} wheels, {total / 2**20:.1f} MiB")
    if args.gl:
        args.gl.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", *GL_PACKAGES], cwd=args.gl, check=True)
        print(f"{args.gl}: {', '.join(sorted(p.name for p in args.gl.glob('*.deb')))}")


if __name__ == "__main__":
    main()
