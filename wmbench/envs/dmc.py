"""Pixel-observation gymnasium wrapper around a dm_control suite task."""

import functools
from typing import Any

import gymnasium
import numpy as np

from wmbench.envs.backgrounds import BACKGROUNDS, VideoBackground, background_geoms, background_mask
from wmbench.envs.gl import ensure_mujoco_gl

RENDER_QUALITIES = ("standard", "fast")
"""Allowed ``render_quality`` values; see :class:`DMCEnv`."""

_CAMERA_IDS = {"quadruped": 2}
"""Camera per domain where it is not camera 0 (the usual choice in pixel-based RL papers)."""


class DMCEnv(gymnasium.Env):
    """A dm_control suite task seen through a camera, with a [-1, 1] action box.

    Observations are uint8 images of shape (3, S, S), channel-first, rendered from
    camera 0 (camera 2 for quadruped). Actions are float arrays of shape (A,) in
    [-1, 1] (clipped), mapped linearly onto the task's action bounds. One ``step``
    is ``action_repeat`` dm_control control steps with the same action, rewards summed,
    stopping early at the episode's end; only the final frame is rendered (rendering
    is the whole cost of acting). At dm_control's time limit (a nonzero discount)
    the step is ``truncated``; a last step with discount 0 is ``terminated``.
    ``info["qpos"]`` and ``info["qvel"]`` are float64 copies of the physics state,
    shapes (nq,) and (nv,).

    Render qualities: ``"standard"`` renders each frame with dm_control's
    ``physics.render`` at the model's own visual settings. ``"fast"`` turns off
    shadows and multisampling (``vis.quality.shadowsize = offsamples = 0``, set at
    construction, before the rendering context exists) and reuses one
    ``dm_control.mujoco.Camera``, rebuilt only when the physics' rendering contexts
    change.

    Backgrounds: ``"standard"`` keeps dm_control's sky and floor. ``"video"`` replaces every
    background pixel (skybox and floor, found with a segmentation render of the same camera) by a
    frame of a video of other dm_control domains under random actions; see
    :mod:`wmbench.envs.backgrounds` for the protocol. The segmentation render is a second render
    call per observation: on walker-walk at 64 × 64, action repeat 2, on a busy 2-core CPU, env
    frames/s went from 44 to 32 (standard quality) and from 369 to 258 (fast), medians of 3 rounds;
    building the env also renders the clips once per process (6–9 s).
    """

    def __init__(
        self,
        domain: str,
        task: str,
        *,
        image_size: int = 64,
        action_repeat: int = 1,
        seed: int = 0,
        render_quality: str = "standard",
        time_limit: float | None = None,
        background: str = "standard",
    ):
        """Loads the task.

        Args:
            domain: dm_control suite domain name, e.g. ``"walker"``.
            task: Task name within the domain, e.g. ``"walk"``.
            image_size: Side S of the square observation, in pixels.
            action_repeat: Control steps per ``step`` call (>= 1).
            seed: Seed of the task's ``numpy.random.RandomState`` (initial states).
            render_quality: ``"standard"`` or ``"fast"`` (see class docstring).
            time_limit: Episode length in seconds of simulated time; None keeps the
                task's default (1000 control steps for most tasks).
            background: ``"standard"`` or ``"video"`` (see class docstring); the video's clip
                and start frame per episode follow ``seed``.

        Raises:
            ValueError: If ``render_quality`` is not in ``RENDER_QUALITIES`` or ``background``
                not in ``BACKGROUNDS``.
            RendererUnavailableError: If no headless OpenGL backend works.
        """
        if render_quality not in RENDER_QUALITIES:
            raise ValueError(
                f"render_quality must be one of {RENDER_QUALITIES}, got {render_quality!r}"
            )
        if background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
        ensure_mujoco_gl()
        from dm_control import suite

        task_kwargs: dict[str, Any] = {"random": seed}
        if time_limit is not None:
            task_kwargs["time_limit"] = time_limit
        self._env = suite.load(domain, task, task_kwargs=task_kwargs)
        self.image_size = image_size
        self.action_repeat = action_repeat
        self.render_quality = render_quality
        self._camera_id = _CAMERA_IDS.get(domain, 0)
        self._camera = None
        self._camera_contexts = None
        if render_quality == "fast":
            quality = self._env.physics.model.vis.quality
            quality.shadowsize = 0
            quality.offsamples = 0
        self.background = background
        self._background = None
        if background == "video":
            self._background = VideoBackground(domain, image_size, seed)
            self._is_background_geom = background_geoms(self._env.physics.model)

        spec = self._env.action_spec()
        self._action_low = np.broadcast_to(spec.minimum, spec.shape).astype(np.float64)
        self._action_high = np.broadcast_to(spec.maximum, spec.shape).astype(np.float64)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        self.observation_space = gymnasium.spaces.Box(
            0, 255, (3, image_size, image_size), np.uint8
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts an episode.

        Args:
            seed: If given, re-seeds the task's RandomState first, so the same seed
                gives the same initial state and pixels.
            options: Unused.

        Returns:
            ``(observation, info)``: a uint8 image (3, S, S) and ``{"qpos", "qvel"}``.
        """
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
        if self._background is not None and seed is not None:
            self._background.seed(seed)
        elif self._background is not None:
            self._background.reset()
        self._env.reset()
        return self._observation(), self._info()

    def rng_state(self) -> dict[str, Any]:
        """Returns the state of everything random in the env: the task's ``RandomState`` (initial
        states, and any noise the task draws) and, with the video background, the background's
        generator and position (which clip and start frame the next ``reset`` draws).

        With :meth:`set_rng_state` and the episode's actions this recreates an episode exactly on
        the same machine and MuJoCo build (MuJoCo's physics is deterministic there, not across
        builds).

        Returns:
            ``{"keys": list of 624 ints, "pos", "has_gauss": int, "cached_gaussian": float,
            "background": VideoBackground.state() or None}``.
        """
        _, keys, pos, has_gauss, cached_gaussian = self._env.task.random.get_state()
        return {
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
            "background": None if self._background is None else self._background.state(),
        }

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restores a state from :meth:`rng_state`; the next ``reset`` draws as it did then."""
        keys = np.asarray(state["keys"], dtype=np.uint32)
        if self._background is not None:
            self._background.set_state(state["background"])
        self._env.task.random.set_state(
            ("MT19937", keys, state["pos"], state["has_gauss"], state["cached_gaussian"])
        )

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advances ``action_repeat`` control steps with one action.

        Args:
            action: Array-like of shape (A,); clipped to [-1, 1], then mapped
                linearly onto the task's action bounds.

        Returns:
            ``(observation, reward, terminated, truncated, info)``; ``reward`` is the sum
            over the repeated steps, up to the episode's end.
        """
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        scaled = self._action_low + (action + 1.0) * 0.5 * (self._action_high - self._action_low)
        reward = 0.0
        for _ in range(self.action_repeat):
            timestep = self._env.step(scaled)
            reward += float(timestep.reward)
            if timestep.last():
                break
        last = timestep.last()
        terminated = last and timestep.discount == 0
        truncated = last and timestep.discount > 0
        return self._observation(), reward, terminated, truncated, self._info()

    def unlimited_hinges(self) -> list[int]:
        """``qpos`` indices of hinge joints without range limits, e.g. cartpole's pole or walker's
        torso pitch.

        Their angles wind past ±π (a spinning pole reaches tens of radians) while the pixels repeat
        every turn, so a model of the images can know such an angle only modulo 2π.
        """
        from dm_control.mujoco.wrapper.mjbindings import enums

        model = self._env.physics.model
        hinge = enums.mjtJoint.mjJNT_HINGE
        return [
            int(model.jnt_qposadr[j])
            for j in range(model.njnt)
            if model.jnt_type[j] == hinge and not model.jnt_limited[j]
        ]

    def close(self) -> None:
        """Frees the physics and its rendering contexts."""
        self._camera = None
        self._camera_contexts = None
        self._env.close()

    def _observation(self) -> np.ndarray:
        """Renders the current frame as a uint8 array of shape (3, S, S)."""
        physics = self._env.physics
        size = self.image_size
        if self.render_quality == "standard":
            render = functools.partial(physics.render, size, size, camera_id=self._camera_id)
        else:
            if physics.contexts is not self._camera_contexts:
                from dm_control.mujoco import Camera

                self._camera = Camera(physics, size, size, camera_id=self._camera_id)
                self._camera_contexts = physics.contexts
            render = self._camera.render
        # copy(): the fast camera returns a view of a buffer it overwrites next render.
        frame = render().copy()
        if self._background is not None:
            mask = background_mask(render(segmentation=True), self._is_background_geom)
            frame[mask] = self._background.next_frame()[mask]
        return frame.transpose(2, 0, 1).copy()

    def _info(self) -> dict[str, Any]:
        """Returns float64 copies of ``qpos`` (nq,) and ``qvel`` (nv,)."""
        data = self._env.physics.data
        return {
            "qpos": np.array(data.qpos, dtype=np.float64),
            "qvel": np.array(data.qvel, dtype=np.float64),
        }
