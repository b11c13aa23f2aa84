"""Distracting backgrounds: moving video behind a dm_control task, carrying no task information.

Protocol: the *natural-video background* setting of Zhang et al. (DBC, ICLR 2021), used by TPC
(Nguyen et al., ICML 2021) and DreamerPro (Deng et al., ICML 2022): every background pixel of each
frame is replaced by the pixel of a video frame, the body of the agent is kept, and the video is
unrelated to the task. Two differences, because no internet is available and runs must be
reproducible:

* the videos are not Kinetics "driving car" clips but renders of *other* dm_control domains acting
  under uniform random actions (``SOURCE_TASKS``, the task's own domain excluded): moving bodies,
  floors and skies like the task's own, often in the agent's own colour (not measured against
  road scenes, but likely harder to tell from the agent), and few and short enough to be memorised;
* background pixels come from MuJoCo's segmentation render (the skybox, i.e. no object, and the
  plane geoms of the world body: the floor, and the arena walls of reacher), not from a colour key.
  Geoms thinner than a pixel (cartpole's rails at 64×64) miss the segmentation render and are
  replaced too.

It is not the Distracting Control Suite (Stone et al., 2021): there are no camera or colour
distractions, and the floor is replaced rather than blended with the video.

Reproducibility: the clips are a fixed function of (task domain, image size) — rendered once per
process with the source tasks seeded by ``SOURCE_SEED`` and cached — and each episode's clip and
start frame come from a generator seeded by the env seed (re-seeded by ``reset(seed=...)``). The
background therefore never depends on the agent's actions: every objective sees the same
background sequence at a given seed. ``DMCEnv.rng_state`` includes the background's generator and
position, so a resumed run replays its current episode with the same background.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

BACKGROUNDS = ("standard", "video")
"""Allowed ``background`` values: dm_control's own sky and floor, or distracting video."""

SOURCE_TASKS = (
    ("humanoid", "walk"),
    ("swimmer", "swimmer6"),
    ("acrobot", "swingup"),
    ("walker", "walk"),
)
"""dm_control tasks whose random-policy renders are the background videos: the first ``CLIPS`` whose
domain is not the task's own. Chosen for visible motion under random actions (the humanoid's
tracking camera sweeps its checkered floor, the acrobot swings; fish, cheetah and hopper barely
move)."""

CLIPS = 3
"""Background clips per task."""

SOURCE_SEED = 0
"""Seed of the source tasks' initial states and of their random actions."""

CLIP_FRAMES = 200
"""Frames per background clip; a clip loops when an episode is longer."""

CONTROL_STEPS_PER_FRAME = 4
"""Source-task control steps between two clip frames (one new random action each step)."""


def background_geoms(model) -> np.ndarray:
    """Which geoms are background: the planes attached to the world body (floor, arena walls).

    Args:
        model: a ``dm_control.mujoco.Physics.model``.

    Returns:
        bool ``[ngeom]``.
    """
    from dm_control.mujoco.wrapper.mjbindings import enums

    return (np.asarray(model.geom_type) == enums.mjtGeom.mjGEOM_PLANE) & (
        np.asarray(model.geom_bodyid) == 0
    )


def background_mask(segmentation: np.ndarray, is_background_geom: np.ndarray) -> np.ndarray:
    """Background pixels of a frame from its segmentation render.

    Args:
        segmentation: int32 ``[S, S, 2]`` from ``physics.render(..., segmentation=True)``: object
            id and object type per pixel; id -1 where no object was hit (the skybox).
        is_background_geom: bool ``[ngeom]`` from :func:`background_geoms`.

    Returns:
        bool ``[S, S]``: true for skybox pixels and pixels of background geoms.
    """
    from dm_control.mujoco.wrapper.mjbindings import enums

    ids, types = segmentation[..., 0], segmentation[..., 1]
    geom = (types == enums.mjtObj.mjOBJ_GEOM) & (ids >= 0)
    hit = np.zeros(ids.shape, dtype=bool)
    hit[geom] = is_background_geom[ids[geom]]
    return (ids == -1) | hit


@functools.lru_cache(maxsize=4)
def source_clips(exclude_domain: str, size: int, frames: int) -> np.ndarray:
    """Renders the background clips of the first ``CLIPS`` source tasks not in ``exclude_domain``.

    Each clip is ``frames`` frames of its task under uniform random actions (a new one every control
    step) from ``SOURCE_SEED``, ``CONTROL_STEPS_PER_FRAME`` control steps apart, rendered without
    shadows or multisampling (the cheap path): about 6 s for 3 × 200 frames at 64 × 64 on one CPU
    core, once per process (cached).

    Args:
        exclude_domain: the task's own dm_control domain, left out of the sources.
        size: side S of the square frames in pixels.
        frames: L, frames per clip.

    Returns:
        uint8 ``[CLIPS, L, S, S, 3]`` (channels last, as MuJoCo renders), read-only.
    """
    from dm_control import suite
    from dm_control.mujoco import Camera

    clips = []
    rng = np.random.default_rng(SOURCE_SEED)
    for domain, task in [source for source in SOURCE_TASKS if source[0] != exclude_domain][:CLIPS]:
        env = suite.load(domain, task, task_kwargs={"random": SOURCE_SEED})
        quality = env.physics.model.vis.quality
        quality.shadowsize = quality.offsamples = 0
        env.reset()
        camera = Camera(env.physics, size, size, camera_id=0)
        spec = env.action_spec()
        clip = np.empty((frames, size, size, 3), np.uint8)
        for i in range(frames):
            for _ in range(CONTROL_STEPS_PER_FRAME):
                if env.step(rng.uniform(spec.minimum, spec.maximum)).last():
                    env.reset()
            clip[i] = camera.render()
        env.close()
        clips.append(clip)
    out = np.stack(clips)
    out.flags.writeable = False
    return out


class VideoBackground:
    """Plays the background clips of one env: a clip and start frame per episode, one frame per
    observation.

    Args:
        domain: the task's dm_control domain (excluded from the sources).
        size: frame side S in pixels.
        seed: seed of the clip and start-frame choice.
    """

    def __init__(self, domain: str, size: int, seed: int) -> None:
        self._clips = source_clips(domain, size, CLIP_FRAMES)
        self.seed(seed)

    def seed(self, seed: int) -> None:
        """Re-seeds the choice of clip and start frame, and starts a new episode."""
        self._rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        """Starts an episode: picks a clip and a start frame uniformly at random."""
        self._clip = int(self._rng.integers(len(self._clips)))
        self._frame = int(self._rng.integers(self._clips.shape[1]))

    def state(self) -> dict[str, Any]:
        """The generator's state and the current clip and frame (plain ints and dicts)."""
        return {"rng": self._rng.bit_generator.state, "clip": self._clip, "frame": self._frame}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores a ``state()``: the next ``reset`` draws the clip and start frame drawn then."""
        self._rng.bit_generator.state = state["rng"]
        self._clip, self._frame = state["clip"], state["frame"]

    def next_frame(self) -> np.ndarray:
        """Returns the episode's next background frame, uint8 ``[S, S, 3]`` (looping at the clip's
        end)."""
        frame = self._clips[self._clip, self._frame % self._clips.shape[1]]
        self._frame += 1
        return frame
