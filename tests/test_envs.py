"""Tests for wmbench.envs: dm_control pixels, the toy task, action repeat, names, GL choice."""

import importlib
import os
from pathlib import Path

import dm_env
import gymnasium
import numpy as np
import pytest

from wmbench.envs import (
    RENDER_QUALITIES,
    ActionRepeat,
    DMCEnv,
    ToyReachEnv,
    UnknownTaskError,
    backgrounds,
    check_task,
    gl,
    make_env,
)
from wmbench.envs.toy import EPISODE_STEPS, STEP_SCALE

# ---------------------------------------------------------------- dm_control


def test_dmc_observations_actions_and_state_over_steps():
    env = make_env("dmc:walker-walk", image_size=64, action_repeat=2, seed=0)
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (3, 64, 64), np.uint8)
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (6,), np.float32)
    obs, info = env.reset()
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
    assert obs in env.observation_space
    assert info["qpos"].shape == (9,) and info["qpos"].dtype == np.float64
    assert info["qvel"].shape == (9,) and info["qvel"].dtype == np.float64
    env.action_space.seed(0)
    frames = [obs]
    for i in range(10):
        # Every other action is far outside the box: it must be clipped, not rejected.
        action = env.action_space.sample() * (4.0 if i % 2 else 1.0)
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs in env.observation_space
        assert isinstance(reward, float) and 0.0 <= reward <= 2.0  # two inner rewards in [0, 1]
        assert not terminated and not truncated
        assert info["qpos"].shape == (9,) and info["qvel"].shape == (9,)
        frames.append(obs)
    assert not np.array_equal(frames[0], frames[-1])  # the walker moved on screen
    assert np.abs(info["qvel"]).sum() > 0.0
    env.close()


def test_dmc_actions_are_clipped_to_unit_box():
    # MuJoCo clamps controls internally but keeps data.ctrl as given, so ctrl shows the clip.
    env = DMCEnv("cartpole", "balance", seed=2, render_quality="fast")
    env.reset()
    for action, expected in ((7.0, 1.0), (-0.25, -0.25), (-3.0, -1.0)):
        env.step(np.array([action], dtype=np.float32))
        np.testing.assert_array_equal(env._env.physics.data.ctrl, [expected])
    env.close()


def test_dmc_time_limit_is_a_truncation():
    # cartpole's control step is 0.01 s, so a 0.1 s limit ends the episode after 10 steps.
    env = DMCEnv("cartpole", "balance", seed=0, render_quality="fast", time_limit=0.1)
    env.reset()
    flags = [env.step(np.zeros(1))[2:4] for _ in range(10)]
    assert flags == [(False, False)] * 9 + [(False, True)]
    env.close()


def test_dmc_zero_discount_last_step_is_a_termination(monkeypatch):
    env = DMCEnv("cartpole", "balance", seed=0, render_quality="fast")
    env.reset()
    monkeypatch.setattr(
        env._env, "step", lambda action: dm_env.termination(reward=0.25, observation={})
    )
    _, reward, terminated, truncated, _ = env.step(np.zeros(1))
    assert (reward, terminated, truncated) == (0.25, True, False)
    env.close()


def test_dmc_action_repeat_stops_at_time_limit_and_sums_inner_rewards():
    inner = DMCEnv("cartpole", "balance", seed=4, render_quality="fast", time_limit=0.1)
    inner.reset()
    inner_rewards = [inner.step(np.full(1, 0.3))[1] for _ in range(10)]
    inner.close()
    # 10 inner steps with 3 repeats: agent steps of 3, 3, 3 and 1 inner steps. DMCEnv repeats
    # internally (rendering once per agent step); it must match gymnasium's wrapper exactly.
    for env in (
        DMCEnv(
            "cartpole", "balance", seed=4, render_quality="fast", time_limit=0.1, action_repeat=3
        ),
        ActionRepeat(
            DMCEnv("cartpole", "balance", seed=4, render_quality="fast", time_limit=0.1), 3
        ),
    ):
        env.reset()
        results = [env.step(np.full(1, 0.3)) for _ in range(4)]
        assert [r[3] for r in results] == [False, False, False, True]
        for step, (start, stop) in enumerate([(0, 3), (3, 6), (6, 9), (9, 10)]):
            assert results[step][1] == pytest.approx(sum(inner_rewards[start:stop]), abs=1e-12)
        env.close()


def test_dmc_same_seed_gives_identical_first_frames():
    first = make_env("dmc:cartpole-balance", seed=3)
    second = make_env("dmc:cartpole-balance", seed=3)
    other = make_env("dmc:cartpole-balance", seed=4)
    frame, info = first.reset()
    same_frame, same_info = second.reset()
    other_frame, _ = other.reset()
    np.testing.assert_array_equal(frame, same_frame)
    np.testing.assert_array_equal(info["qpos"], same_info["qpos"])
    assert not np.array_equal(frame, other_frame)
    # reset(seed=...) re-seeds: envs with different seeds and histories then agree.
    first.step(np.ones(1))
    reseeded, _ = first.reset(seed=11)
    other_reseeded, _ = other.reset(seed=11)
    np.testing.assert_array_equal(reseeded, other_reseeded)
    for env in (first, second, other):
        env.close()


def test_dmc_fast_and_standard_frames_are_valid_and_differ():
    standard = DMCEnv("walker", "walk", seed=1, render_quality="standard")
    fast = DMCEnv("walker", "walk", seed=1, render_quality="fast")
    standard_frame, standard_info = standard.reset()
    fast_frame, fast_info = fast.reset()
    assert standard_frame in standard.observation_space
    assert fast_frame in fast.observation_space
    np.testing.assert_array_equal(standard_info["qpos"], fast_info["qpos"])  # same state...
    assert (standard_frame != fast_frame).mean() > 0.05  # ...drawn without shadows/multisampling
    # The fast camera is reused across steps and resets and must keep tracking the physics.
    moved = [fast.step(np.ones(6))[0] for _ in range(3)]
    assert not np.array_equal(moved[0], moved[-1])
    again, _ = fast.reset(seed=1)
    np.testing.assert_array_equal(again, fast_frame)
    standard.close()
    fast.close()


# ---------------------------------------------------------------- toy:reach


def _centre(obs: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """Arena (x, y) of the centre of the pixels of colour ``rgb`` in a (3, S, S) image."""
    rows, columns = np.nonzero(np.all(obs == np.array(rgb)[:, None, None], axis=0))
    last = obs.shape[-1] - 1
    return np.array([columns.mean() / last * 2.0 - 1.0, 1.0 - rows.mean() / last * 2.0])


def test_toy_observation_draws_target_and_agent():
    env = ToyReachEnv(image_size=64, seed=5)
    obs, info = env.reset()
    assert obs in env.observation_space
    colours = set(map(tuple, np.unique(obs.reshape(3, -1), axis=1).T.tolist()))
    assert colours == {(0, 0, 0), (0, 255, 0), (255, 0, 0)}
    np.testing.assert_array_equal(info["qpos"], [0.0, 0.0])
    # Squares are centred on the nearest pixel: at most half a pixel (1/63 units) off.
    np.testing.assert_allclose(_centre(obs, (255, 0, 0)), [0.0, 0.0], atol=1.01 / 63)


def test_toy_moves_by_scaled_clipped_action_and_truncates_after_50_steps():
    env = ToyReachEnv(image_size=32, seed=0)
    env.reset()
    _, _, _, _, info = env.step(np.array([1.0, -0.5]))
    np.testing.assert_allclose(info["qvel"], [STEP_SCALE, -0.5 * STEP_SCALE])
    _, _, _, _, info = env.step(np.array([9.0, 0.0]))  # clipped to 1
    np.testing.assert_allclose(info["qpos"], [2 * STEP_SCALE, -0.5 * STEP_SCALE])
    for _ in range(10):  # pushed into the wall: position clipped to the arena
        _, _, _, _, info = env.step(np.array([1.0, 0.0]))
    assert info["qpos"][0] == 1.0 and info["qvel"][0] == 0.0
    flags = [env.step(np.zeros(2))[2:4] for _ in range(EPISODE_STEPS - 12)]
    assert flags == [(False, False)] * (EPISODE_STEPS - 13) + [(False, True)]


@pytest.mark.parametrize("terminal_on_reach", [False, True])
def test_toy_reaching_pays_and_optionally_terminates(terminal_on_reach):
    env = ToyReachEnv(image_size=64, seed=3, terminal_on_reach=terminal_on_reach)
    obs, info = env.reset()
    target = _centre(obs, (0, 255, 0))
    rewards = []
    while not rewards or (rewards[-1] == 0.0 and len(rewards) < 20):
        action = (target - info["qpos"]) / STEP_SCALE
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        assert terminated == (reward == 1.0 and terminal_on_reach) and not truncated
    assert rewards[-1] == 1.0 and len(rewards) > 1
    np.testing.assert_allclose(_centre(obs, (255, 0, 0)), info["qpos"], atol=1.01 / 63)


def test_toy_is_deterministic_given_seed():
    def rollout(env, seed):
        obs, _ = env.reset(seed=seed)
        frames = [obs]
        for action in ([1.0, 0.0], [0.0, -1.0], [-0.5, 0.5]):
            frames.append(env.step(np.array(action))[0])
        return np.stack(frames)

    first, second = ToyReachEnv(seed=0), ToyReachEnv(seed=123)
    np.testing.assert_array_equal(rollout(first, 7), rollout(second, 7))
    assert not np.array_equal(rollout(first, 7), rollout(first, 8))
    # The constructor seed drives the first reset when reset() gets no seed.
    np.testing.assert_array_equal(ToyReachEnv(seed=9).reset()[0], ToyReachEnv(seed=9).reset()[0])
    assert not np.array_equal(ToyReachEnv(seed=9).reset()[0], ToyReachEnv(seed=10).reset()[0])


# ---------------------------------------------------------------- ActionRepeat


class _ScriptedEnv(gymnasium.Env):
    """Pays rewards 1, 2, 4, 8, ... and ends its episode after ``length`` steps."""

    observation_space = gymnasium.spaces.Box(0, 100, (1,), np.int64)
    action_space = gymnasium.spaces.Discrete(1)

    def __init__(self, length: int, terminal: bool):
        self.length, self.terminal, self.t = length, terminal, 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.array([0]), {"t": 0}

    def step(self, action):
        self.t += 1
        end = self.t == self.length
        reward = float(2 ** (self.t - 1))
        info = {"t": self.t}
        return np.array([self.t]), reward, end and self.terminal, end and not self.terminal, info


@pytest.mark.parametrize("terminal", [True, False])
def test_action_repeat_sums_rewards_and_stops_at_episode_end(terminal):
    env = ActionRepeat(_ScriptedEnv(length=3, terminal=terminal), 2)
    env.reset()
    obs, reward, terminated, truncated, info = env.step(0)
    assert (obs[0], reward, terminated, truncated, info["t"]) == (2, 3.0, False, False, 2)
    obs, reward, terminated, truncated, info = env.step(0)
    # Only the third inner step (reward 4) counts; the fourth (8) is never taken.
    assert (obs[0], reward, terminated, truncated, info["t"]) == (3, 4.0, terminal, not terminal, 3)
    env.reset()
    assert env.step(0)[1] == 3.0


def test_make_env_toy_uses_action_repeat():
    env = make_env("toy:reach", image_size=16, action_repeat=3, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (3, 16, 16) and obs.dtype == np.uint8
    _, _, _, _, info = env.step(np.array([1.0, 0.0]))
    np.testing.assert_allclose(info["qpos"], [3 * STEP_SCALE, 0.0])


# ---------------------------------------------------------------- names and arguments


@pytest.mark.parametrize(
    ("task", "listed"),
    [
        ("atari:pong", ["dmc:", "toy:", "toy:reach"]),
        ("walker-walk", ["dmc:", "toy:"]),
        ("dmc:walker-fly", ["walker-walk", "cartpole-balance", "ball_in_cup-catch", "'cup'"]),
        ("dmc:spaceship-walk", ["walker-walk", "cheetah-run"]),
        ("dmc:walker", ["walker-walk"]),
        ("toy:fly", ["toy:reach"]),
    ],
)
def test_unknown_tasks_raise_with_listing(task, listed):
    with pytest.raises(UnknownTaskError) as caught:
        check_task(task)
    assert isinstance(caught.value, ValueError)
    assert repr(task) in str(caught.value)
    for name in listed:
        assert name in str(caught.value)
    with pytest.raises(UnknownTaskError):
        make_env(task)


@pytest.mark.parametrize(
    "task",
    ["dmc:walker-walk", "dmc:cartpole-balance", "dmc:ball_in_cup-catch", "dmc:cup-catch",
     "toy:reach"],
)
def test_known_tasks_pass_check(task):
    assert check_task(task) is None


def test_cup_alias_builds_ball_in_cup():
    env = make_env("dmc:cup-catch", image_size=32, render_quality="fast")
    _, info = env.reset()
    assert env.action_space.shape == (2,)
    assert info["qpos"].shape == (4,)  # cup x, z and ball x, z
    env.close()


@pytest.mark.parametrize(
    ("kwargs", "allowed"),
    [
        ({"image_size": 7}, ">= 8"),
        ({"action_repeat": 0}, ">= 1"),
        ({"render_quality": "ultra"}, str(RENDER_QUALITIES)),
    ],
)
def test_make_env_rejects_bad_arguments(kwargs, allowed):
    with pytest.raises(ValueError) as caught:
        make_env("toy:reach", **kwargs)
    assert allowed in str(caught.value)


# ---------------------------------------------------------------- GL backend


def test_ensure_mujoco_gl_probes_and_keeps_a_working_user_choice(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.setenv("PYOPENGL_PLATFORM", "osmesa")
    probed = []
    monkeypatch.setattr(gl, "_probe", lambda backend, platform: probed.append((backend, platform)))
    assert gl.ensure_mujoco_gl.__wrapped__() == "osmesa"
    assert probed == [("osmesa", "osmesa")]  # with the user's own PYOPENGL_PLATFORM


def test_ensure_mujoco_gl_takes_first_working_backend(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    probed = []
    monkeypatch.setattr(
        gl, "_probe", lambda b, p: probed.append(b) or (None if b == "osmesa" else "no EGL")
    )
    assert gl.ensure_mujoco_gl.__wrapped__() == "osmesa"
    assert probed == ["egl", "osmesa"]
    assert os.environ["MUJOCO_GL"] == "osmesa" and os.environ["PYOPENGL_PLATFORM"] == "osmesa"


def test_ensure_mujoco_gl_names_the_fix_when_nothing_works(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(gl, "_probe", lambda backend, platform: f"no {backend}")
    with pytest.raises(gl.RendererUnavailableError, match="apt-get install -y libegl1 libopengl0"):
        gl.ensure_mujoco_gl.__wrapped__()
    monkeypatch.setattr(gl, "_probe", lambda backend, platform: "unavailable")
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    with pytest.raises(gl.RendererUnavailableError, match="MUJOCO_GL=osmesa cannot create"):
        gl.ensure_mujoco_gl.__wrapped__()


@pytest.mark.parametrize(
    "value, message",
    [("bogus", "MUJOCO_GL='bogus' is not a MuJoCo rendering backend"), ("glfw", "needs a display")],
)
def test_ensure_mujoco_gl_rejects_a_user_choice_that_cannot_work(monkeypatch, value, message):
    monkeypatch.setenv("MUJOCO_GL", value)
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(gl.RendererUnavailableError, match=message):
        gl.ensure_mujoco_gl.__wrapped__()


# ---------------------------------------------------------------- replaying an episode (resume)


@pytest.mark.parametrize(
    "task", ["toy:reach", "dmc:cartpole-swingup", "dmc:cartpole-swingup?background=video"]
)
def test_rng_state_and_the_actions_recreate_an_episode_in_a_fresh_env(task, monkeypatch):
    """What a resumed run relies on: the generator state before reset plus the actions give the same
    frames (the video background's clip and start frame included)."""
    monkeypatch.setattr(backgrounds, "CLIP_FRAMES", 6)  # short clips: the protocol is the same
    kwargs = dict(image_size=64, action_repeat=2, render_quality="fast")
    env = make_env(task, seed=5, **kwargs)
    env.reset()  # a second episode: its initial state comes from the continued generator
    state = env.unwrapped.rng_state()
    first, _ = env.reset()
    actions = [np.full(env.action_space.shape, v, np.float32) for v in (0.5, -1.0, 0.25)]
    for action in actions:
        last, *_ = env.step(action)
    fresh = make_env(task, seed=6, **kwargs)
    assert not np.array_equal(fresh.reset()[0], first)  # another seed starts elsewhere
    fresh.unwrapped.set_rng_state(state)
    np.testing.assert_array_equal(fresh.reset()[0], first)
    for action in actions:
        replayed, *_ = fresh.step(action)
    np.testing.assert_array_equal(replayed, last)
    env.close()
    fresh.close()


# ---------------------------------------------------------------- dependencies

def test_the_gymnasium_requirement_has_repeat_action():
    """gymnasium.wrappers.RepeatAction first appeared in gymnasium 1.3.0 (not in 1.2.3)."""
    import tomllib
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    gym = next(Requirement(r) for r in pyproject["project"]["dependencies"] if r.startswith("gym"))
    assert "1.2.3" not in gym.specifier and "1.3.0" in gym.specifier


def test_an_old_gymnasium_gets_one_clear_error(monkeypatch):
    import wmbench.envs.wrappers as wrappers
    from wmbench.errors import UsageError

    monkeypatch.delattr(gymnasium.wrappers, "RepeatAction")  # as in gymnasium < 1.3
    try:
        with pytest.raises(UsageError) as caught:  # the CLI prints it as one line, exit 2
            importlib.reload(wrappers)
    finally:
        monkeypatch.undo()
        importlib.reload(wrappers)
    assert str(caught.value).startswith("wmbench needs gymnasium >= 1.3")
    assert str(caught.value).endswith(f"this environment has gymnasium {gymnasium.__version__}: "
                                      "pip install 'gymnasium>=1.3'")
