"""Distracting video backgrounds: task-name options, the segmentation mask, compositing, seeding."""

import numpy as np
import pytest

from wmbench.envs import BACKGROUNDS, DMCEnv, UnknownTaskError, backgrounds, check_task, make_env

CLIP_FRAMES = 6  # short clips keep the tests fast; the protocol does not depend on their length


@pytest.fixture
def short_clips(monkeypatch):
    monkeypatch.setattr(backgrounds, "CLIP_FRAMES", CLIP_FRAMES)


def test_background_option_in_task_names():
    assert BACKGROUNDS == ("standard", "video")
    check_task("dmc:walker-walk?background=video")
    check_task("dmc:cup-catch?background=standard")
    for bad, fragment in [
        ("dmc:walker-walk?background=kinetics", "Bad option 'background=kinetics'"),
        ("dmc:walker-walk?colour=video", "allowed: background=standard|video"),
        ("dmc:walker-walk?background", "Bad option 'background'"),
        ("dmc:walker-walk?background=video&background=video", "each at most once"),
        ("toy:reach?background=video", "only dmc: tasks take options"),
    ]:
        with pytest.raises(UnknownTaskError, match=fragment.replace("|", r"\|")):
            check_task(bad)
    with pytest.raises(ValueError, match=r"background must be one of \('standard', 'video'\)"):
        DMCEnv("cartpole", "swingup", background="kinetics")


def test_background_mask_marks_sky_and_background_geoms_only():
    from dm_control.mujoco.wrapper.mjbindings import enums

    geom, light = enums.mjtObj.mjOBJ_GEOM, enums.mjtObj.mjOBJ_LIGHT
    is_background_geom = np.array([True, False])  # geom 0 is the floor
    segmentation = np.array([[[-1, -1], [0, geom]], [[1, geom], [0, light]]], dtype=np.int32)
    mask = backgrounds.background_mask(segmentation, is_background_geom)
    np.testing.assert_array_equal(mask, [[True, True], [False, False]])


def test_background_geoms_are_the_world_planes():
    env = DMCEnv("reacher", "easy")
    model = env._env.physics.model
    names = {model.id2name(i, "geom") for i in np.flatnonzero(backgrounds.background_geoms(model))}
    assert names == {"ground", "wall_x", "wall_y", "wall_neg_x", "wall_neg_y"}
    env.close()


def _rollout(env, actions, seed):
    """Observations ``(T, 3, 64, 64)`` and background masks ``(T, 64, 64)`` of a reset and
    ``actions``."""
    physics = env._env.physics
    is_background_geom = backgrounds.background_geoms(physics.model)

    def mask():
        return backgrounds.background_mask(
            physics.render(64, 64, camera_id=0, segmentation=True), is_background_geom
        )

    frames, masks = [env.reset(seed=seed)[0]], [mask()]
    for action in actions:
        frames.append(env.step(action)[0])
        masks.append(mask())
    return np.stack(frames), np.stack(masks)


@pytest.mark.parametrize("quality", ["standard", "fast"])
def test_video_replaces_exactly_the_background_and_keeps_the_agent(short_clips, quality):
    actions = np.random.default_rng(0).uniform(-1, 1, (4, 1))
    standard = DMCEnv("cartpole", "swingup", seed=3, render_quality=quality)
    video = DMCEnv("cartpole", "swingup", seed=3, render_quality=quality, background="video")
    plain, _ = _rollout(standard, actions, seed=3)
    distracted, mask = _rollout(video, actions, seed=3)
    clips = backgrounds.source_clips("cartpole", 64, CLIP_FRAMES)
    assert clips.shape == (3, CLIP_FRAMES, 64, 64, 3)
    assert (
        0.5 < mask.mean() < 0.99
    )  # sky and floor are most of a cartpole frame; the cart and pole are not
    mask = mask[:, None].repeat(3, 1)  # to (T, 3, 64, 64)
    np.testing.assert_array_equal(distracted[~mask], plain[~mask])  # agent pixels untouched
    assert not np.array_equal(distracted[mask], plain[mask])
    # background pixels are consecutive frames of one clip, from some start frame, looping
    played = clips.transpose(0, 1, 4, 2, 3)
    matches = [
        (c, s)
        for c in range(3)
        for s in range(CLIP_FRAMES)
        if all(
            np.array_equal(distracted[t][mask[t]], played[c, (s + t) % CLIP_FRAMES][mask[t]])
            for t in range(5)
        )
    ]
    assert matches
    # ... and the background moves
    assert not np.array_equal(played[matches[0][0], 0], played[matches[0][0], 1])
    standard.close()
    video.close()


def test_video_background_follows_the_seed_not_the_actions(short_clips):
    rng = np.random.default_rng(0)
    env = DMCEnv("cartpole", "swingup", seed=0, render_quality="fast", background="video")
    first, mask_a = _rollout(env, rng.uniform(-1, 1, (3, 1)), seed=5)
    again, mask_b = _rollout(
        env, rng.uniform(-1, 1, (3, 1)), seed=5
    )  # other actions, same reset seed
    both = (mask_a & mask_b)[:, None].repeat(3, 1)
    np.testing.assert_array_equal(first[both], again[both])
    other, _ = _rollout(env, np.zeros((3, 1)), seed=6)
    assert not np.array_equal(first[both], other[both])
    env.close()


def test_make_env_passes_the_background_option(short_clips):
    env = make_env("dmc:cartpole-swingup?background=video", render_quality="fast")
    assert env.background == "video"
    assert make_env("dmc:cartpole-swingup", render_quality="fast").background == "standard"

