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


def _backend_works(backend: str) -> bool:
    """Tells whether ``backend`` can create a MuJoCo GL context, in a subprocess.

    Args:
        backend: A MuJoCo GL backend name, ``"egl"`` or ``"osmesa"``.

    Returns:
        True if a child Python process with ``MUJOCO_GL=backend`` created and freed
        an 8x8 ``mujoco.GLContext`` and exited with status 0 within 60 s.
    """
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env=env,
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


@functools.cache
def ensure_mujoco_gl() -> str:
    """Makes sure ``MUJOCO_GL`` names a working backend before dm_control is imported.

    A ``MUJOCO_GL`` already set by the user is kept (not probed) if dm_control accepts it
    (``glfw`` only with a ``DISPLAY``). Otherwise
    ``egl`` then ``osmesa`` are probed in a short subprocess; the first that works
    is written to ``os.environ["MUJOCO_GL"]`` and ``os.environ["PYOPENGL_PLATFORM"]``.
    A successful result is cached for the life of the process.

    Returns:
        The backend name now in ``os.environ["MUJOCO_GL"]``, e.g. ``"egl"``.

    Raises:
        RendererUnavailableError: If the user's ``MUJOCO_GL`` cannot work, or it is unset
            and neither ``egl`` nor ``osmesa`` can create a GL context. The message names
            the fix.
    """
    user_choice = os.environ.get("MUJOCO_GL")
    if user_choice:
        if user_choice not in _VALID:
            raise RendererUnavailableError(
                f"MUJOCO_GL={user_choice!r} is not a MuJoCo rendering backend; use one of "
                f"{', '.join(_VALID)} (egl or osmesa without a display), or unset it to let "
                "wmbench choose"
            )
        if user_choice == "glfw" and not os.environ.get("DISPLAY"):
            raise RendererUnavailableError(
                "MUJOCO_GL=glfw needs a display (DISPLAY is unset); use MUJOCO_GL=egl or osmesa, "
                "or unset it to let wmbench choose"
            )
        return user_choice
    for backend in _CANDIDATES:
        if _backend_works(backend):
            os.environ["MUJOCO_GL"] = backend
            os.environ["PYOPENGL_PLATFORM"] = backend
            return backend
    raise RendererUnavailableError(
        f"No headless OpenGL backend for MuJoCo: tried MUJOCO_GL={' and '.join(_CANDIDATES)}, "
        f"neither could create a GL context. To fix, {_FIX}."
    )
