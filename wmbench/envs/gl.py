"""Headless OpenGL backend selection for MuJoCo rendering.

dm_control reads the ``MUJOCO_GL`` environment variable once, when it is first
imported, so :func:`ensure_mujoco_gl` must run before any ``dm_control`` import.
Every module of :mod:`wmbench.envs` therefore imports dm_control lazily, inside
functions, after calling it.
"""

import functools
import os
import subprocess
import sys

from wmbench.errors import UsageError

_CANDIDATES = ("egl", "osmesa")
_VALID = ("egl", "osmesa", "glfw")  # the backends dm_control accepts

# Run in a child process so that a crashing or hanging GL driver cannot take the
# caller down, and so that the probe's MUJOCO_GL does not leak into this process.
_PROBE = "import mujoco; ctx = mujoco.GLContext(8, 8); ctx.make_current(); ctx.free()"
_PROBE_TIMEOUT_S = 60.0

_FIX = (
    "install a headless OpenGL backend with "
    "`apt-get install -y libegl1 libopengl0 libegl-mesa0 libgl1-mesa-dri libosmesa6`, "
    "or set MUJOCO_GL yourself (e.g. MUJOCO_GL=egl)"
)


class RendererUnavailableError(UsageError):
    """Raised when no headless OpenGL backend can create a MuJoCo GL context."""


def _probe(backend: str, platform: str | None) -> str | None:
    """Tries to create a MuJoCo GL context with ``backend`` in a subprocess.

    Args:
        backend: A MuJoCo GL backend name, ``"egl"``, ``"osmesa"`` or ``"glfw"``.
        platform: ``PYOPENGL_PLATFORM`` for the child; ``None`` leaves it unset.

    Returns:
        ``None`` if a child Python process with ``MUJOCO_GL=backend`` (and this process's other
        variables, e.g. ``MUJOCO_EGL_DEVICE_ID``) created and freed an 8x8 ``mujoco.GLContext``
        within 60 s; else why not (the last line of its error output).
    """
    env = dict(os.environ, MUJOCO_GL=backend)
    env.pop("PYOPENGL_PLATFORM", None)
    if platform is not None:
        env["PYOPENGL_PLATFORM"] = platform
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"no context within {_PROBE_TIMEOUT_S:.0f} s"
    if result.returncode == 0:
        return None
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {result.returncode}"


def _check_user_choice(backend: str) -> None:
    """Checks a ``MUJOCO_GL`` the user set: a backend dm_control accepts, agreeing with
    ``PYOPENGL_PLATFORM``, with a display for ``glfw``, and able to create a context (probed).

    Raises:
        RendererUnavailableError: naming what is wrong and the fix.
    """
    if backend not in _VALID:
        raise RendererUnavailableError(
            f"MUJOCO_GL={backend!r} is not a MuJoCo rendering backend; use one of "
            f"{', '.join(_VALID)} (egl or osmesa without a display), or unset it to let wmbench "
            "choose"
        )
    platform = os.environ.get("PYOPENGL_PLATFORM")
    if backend in _CANDIDATES and platform and platform != backend:
        raise RendererUnavailableError(
            f"MUJOCO_GL={backend} but PYOPENGL_PLATFORM={platform}: they must name the same "
            f"backend; set PYOPENGL_PLATFORM={backend} or unset it"
        )
    if backend == "glfw" and not os.environ.get("DISPLAY"):
        raise RendererUnavailableError(
            "MUJOCO_GL=glfw needs a display (DISPLAY is unset); use MUJOCO_GL=egl or osmesa, "
            "or unset it to let wmbench choose"
        )
    reason = _probe(backend, platform)
    if reason is None:
        return
    if backend == "egl" and "MUJOCO_EGL_DEVICE_ID" in os.environ:
        fix = "set MUJOCO_EGL_DEVICE_ID to an EGL device of this machine, or unset it"
    else:
        fix = f"unset MUJOCO_GL to let wmbench choose, or {_FIX}"
    message = f"MUJOCO_GL={backend} cannot create a GL context ({reason}); {fix}"
    raise RendererUnavailableError(message)


@functools.cache
def ensure_mujoco_gl() -> str:
    """Makes sure ``MUJOCO_GL`` names a working backend before dm_control is imported.

    A ``MUJOCO_GL`` set by the user is kept if it works: dm_control accepts it, it agrees with a
    ``PYOPENGL_PLATFORM`` the user set, ``glfw`` has a ``DISPLAY``, and a short subprocess creates a
    context with it (and with the user's ``PYOPENGL_PLATFORM`` and ``MUJOCO_EGL_DEVICE_ID``).
    Otherwise ``egl`` then ``osmesa`` are probed; the first that works is written to
    ``os.environ["MUJOCO_GL"]`` and ``os.environ["PYOPENGL_PLATFORM"]``. A successful result is
    cached for the life of the process.

    Returns:
        The backend name now in ``os.environ["MUJOCO_GL"]``, e.g. ``"egl"``.

    Raises:
        RendererUnavailableError: If the user's ``MUJOCO_GL`` cannot work, or it is unset and
            neither ``egl`` nor ``osmesa`` can create a GL context. The message names the fix.
    """
    user_choice = os.environ.get("MUJOCO_GL")
    if user_choice:
        _check_user_choice(user_choice)
        return user_choice
    reasons = {}
    for backend in _CANDIDATES:
        reasons[backend] = _probe(backend, backend)
        if reasons[backend] is None:
            os.environ["MUJOCO_GL"] = backend
            os.environ["PYOPENGL_PLATFORM"] = backend
            return backend
    tried = "; ".join(f"MUJOCO_GL={b}: {r}" for b, r in reasons.items())
    hint = ""
    if "MUJOCO_EGL_DEVICE_ID" in os.environ:
        hint = (
            " (MUJOCO_EGL_DEVICE_ID is set: unset it, or set it to an EGL device of this machine)"
        )
    raise RendererUnavailableError(
        "No headless OpenGL backend for MuJoCo: neither could create a GL context "
        f"({tried}){hint}. To fix, {_FIX}."
    )
