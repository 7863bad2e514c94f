"""DMC from pixels (`plastic.envs.dmc`): the observation, action-repeat, episode, seeding and checkpoint contract.

Rendering costs a few ms a frame, so episodes are kept short (cartpole with action repeat 8, or a small time_limit).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("dm_control")

import plastic.envs.mujoco_gl as mujoco_gl  # noqa: E402
from plastic.envs.dmc import (  # noqa: E402
    ACTION_REPEAT,
    DMC_MEDIUM_TASKS,
    RENDERING_BACKENDS,
    RenderingBackendError,
    default_action_repeat,
    make_dmc_env,
    parse_task,
)


def rollout(env, actions):
    """Frames and rewards of stepping `actions` (stops at an episode end)."""
    frames, rewards = [], []
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(action)
        frames.append(observation)
        rewards.append(reward)
        if terminated or truncated:
            break
    return np.stack(frames), np.array(rewards)


def random_actions(env, count, seed):
    generator = np.random.default_rng(seed)
    return generator.uniform(-1, 1, size=(count, *env.action_space.shape)).astype(np.float32)


def test_medium_tasks_and_action_repeats_follow_the_protocol():
    assert len(DMC_MEDIUM_TASKS) == 11
    for task in DMC_MEDIUM_TASKS:
        parse_task(task)  # every one is a real suite task
    # Nikishin et al. 2022's table (PlaNet's, by exact task name; 2 for every other task).
    assert ACTION_REPEAT == {
        "acrobot-swingup": 2,
        "cartpole-swingup_sparse": 2,
        "cheetah-run": 4,
        "finger-turn_easy": 2,
        "finger-turn_hard": 2,
        "hopper-hop": 2,
        "quadruped-run": 2,
        "quadruped-walk": 2,
        "reacher-easy": 4,
        "reacher-hard": 2,
        "walker-run": 2,
    }
    assert {task: default_action_repeat(task) for task in (
        "cartpole-swingup", "reacher-easy", "cheetah-run", "finger-spin", "ball_in_cup-catch", "walker-walk")} == {
        "cartpole-swingup": 8, "reacher-easy": 4, "cheetah-run": 4, "finger-spin": 2, "ball_in_cup-catch": 4,
        "walker-walk": 2}
    assert default_action_repeat("humanoid-run") == 2


@pytest.mark.parametrize("task, action_repeat, expected", [
    ("reacher-easy", None, 4), ("reacher-hard", None, 2), ("reacher-hard", 3, 3)])
def test_env_exposes_the_tasks_action_repeat_unless_overridden(task, action_repeat, expected):
    env = make_dmc_env(task, seed=0, train=True, action_repeat=action_repeat)
    assert env.action_repeat == expected
    env.close()


def test_action_repeat_table_loads_without_dm_control():
    code = ("import sys; from plastic.envs.dmc import ACTION_REPEAT; from plastic.config import build; "
            "assert build('dmc:cheetah-run').dmc.action_repeat == 4; assert 'dm_control' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("grayscale", "image_size"), [(True, 64), (False, 84)])
def test_observation_is_a_uint8_stack_of_frames(grayscale, image_size):
    env = make_dmc_env("reacher-easy", seed=0, train=True, image_size=image_size, grayscale=grayscale)
    channels = 1 if grayscale else 3
    observation, _ = env.reset()
    assert env.frame_shape == (channels, image_size, image_size) and env.frame_stack == 3
    assert observation.shape == (3 * channels, image_size, image_size) and observation.dtype == np.uint8
    assert env.observation_space.contains(observation)
    assert env.action_space.shape == (2,) and env.action_space.dtype == np.float32
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    observation, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(observation)
    assert observation.std() > 0  # a real image, not a blank buffer
    env.close()


def test_grayscale_frame_is_the_luma_of_the_rgb_frame():
    gray = make_dmc_env("cartpole-swingup", seed=3, train=True, grayscale=True, frame_stack=1).reset()[0]
    rgb = make_dmc_env("cartpole-swingup", seed=3, train=True, grayscale=False, frame_stack=1).reset()[0]
    luma = np.rint(0.299 * rgb[0].astype(np.float64) + 0.587 * rgb[1] + 0.114 * rgb[2])
    assert np.abs(gray[0].astype(np.int64) - luma).max() <= 1  # float32 vs float64 rounding at .5


def test_action_repeat_sums_the_raw_rewards_of_the_simulator():
    from dm_control import suite

    env = make_dmc_env("cartpole-swingup", seed=5, train=True, action_repeat=4)
    env.reset()
    raw = suite.load("cartpole", "swingup", task_kwargs={"random": 5})
    raw.reset()
    actions = random_actions(env, 6, seed=0)
    _, rewards = rollout(env, actions)
    expected = [sum(raw.step(action).reward for _ in range(4)) for action in actions]
    assert rewards.tolist() == expected
    assert min(expected) > 0  # swingup's reward is dense: the comparison is not 0 == 0
    assert env.total_env_steps == 6 * 4


def test_frame_stack_shifts_oldest_out_and_newest_in():
    env = make_dmc_env("cartpole-swingup", seed=0, train=True, frame_stack=3)
    first, _ = env.reset()
    assert all(np.array_equal(first[0], first[i]) for i in range(3))  # k copies of the first frame
    second, *_ = env.step(np.ones(1, np.float32))
    third, *_ = env.step(np.ones(1, np.float32))
    assert np.array_equal(second[:2], first[1:]) and np.array_equal(third[:2], second[1:])
    assert not np.array_equal(third[2], second[2])  # the cart moved
    env.close()


def test_an_episode_is_1000_simulator_steps_and_ends_truncated():
    env = make_dmc_env("cartpole-swingup", seed=0, train=True)  # action repeat 8: 125 agent steps
    env.reset()
    returns = 0.0
    for step in range(1, 126):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        returns += reward
        assert terminated is False and truncated == (step == 125)
        assert ("episode" in info) == (step == 125)
    assert info["episode"] == {"return": returns, "length": 125}
    assert env.total_env_steps == 1000
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())


def test_time_limit_that_is_not_a_multiple_of_the_action_repeat_cuts_the_last_repeat():
    env = make_dmc_env("reacher-easy", seed=0, train=True, action_repeat=4, time_limit=10)
    env.reset()
    steps = [env.step(np.zeros(2, np.float32)) for _ in range(3)]
    assert [s[3] for s in steps] == [False, False, True]
    assert [s[4]["env_steps"] for s in steps] == [4, 4, 2] and env.total_env_steps == 10


def test_actions_outside_the_box_are_clipped():
    stepped = []
    for action in (1.0, 7.0):
        env = make_dmc_env("cartpole-swingup", seed=0, train=True)
        env.reset()
        stepped.append(rollout(env, np.full((3, 1), action, np.float32)))
    assert np.array_equal(stepped[0][0], stepped[1][0]) and np.array_equal(stepped[0][1], stepped[1][1])


def test_same_seed_same_actions_give_identical_frames_and_rewards():
    runs = []
    for seed in (11, 11, 12):
        env = make_dmc_env("reacher-easy", seed=seed, train=True, time_limit=40)
        first, _ = env.reset()
        frames, rewards = rollout(env, random_actions(env, 10, seed=1))
        runs.append((first, frames, rewards))
    assert np.array_equal(runs[0][1], runs[1][1]) and np.array_equal(runs[0][2], runs[1][2])
    assert not np.array_equal(runs[0][0], runs[2][0])  # another seed puts the target elsewhere


def test_get_state_then_set_state_continues_exactly_even_across_an_episode_boundary():
    # reacher randomises the target (a model field) per episode, so this also checks the model and task-RNG restore.
    def make(seed):
        return make_dmc_env("reacher-easy", seed=seed, train=True, time_limit=40)  # 10 agent steps an episode

    env = make(seed=1)
    env.reset()
    actions = random_actions(env, 20, seed=2)
    rollout(env, actions[:6])
    state = env.get_state()

    def continue_run(env):
        frames, rewards = rollout(env, actions[6:])  # to the end of the episode
        first, _ = env.reset()  # the next episode's initial state comes from the task's random state
        more_frames, more_rewards = rollout(env, actions[10:13])
        return np.concatenate([frames, first[None], more_frames]), np.concatenate([rewards, more_rewards])

    expected_frames, expected_rewards = continue_run(env)
    restored = make(seed=99)
    restored.reset()
    restored.set_state(state)
    assert restored.total_env_steps == 6 * 4
    frames, rewards = continue_run(restored)
    assert np.array_equal(frames, expected_frames) and np.array_equal(rewards, expected_rewards)


def test_restore_includes_the_solver_warm_start_so_contact_tasks_resume_bit_exactly():
    # walker's feet touch the floor: without MuJoCo's warm start (qacc_warmstart) the rewards drift by ~1e-15.
    env = make_dmc_env("walker-run", seed=1, train=True)
    env.reset()
    actions = random_actions(env, 40, seed=0)
    rollout(env, actions[:20])
    state = env.get_state()
    expected_frames, expected_rewards = rollout(env, actions[20:])
    restored = make_dmc_env("walker-run", seed=5, train=True)
    restored.reset()
    restored.set_state(state)
    frames, rewards = rollout(restored, actions[20:])
    assert np.array_equal(rewards, expected_rewards) and np.array_equal(frames, expected_frames)


def test_set_state_refuses_a_state_from_another_task():
    state = make_dmc_env("reacher-easy", seed=0, train=True).get_state()
    with pytest.raises(ValueError, match="task"):
        make_dmc_env("cartpole-swingup", seed=0, train=True).set_state(state)


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("cheetah", "'<domain>-<task>'"),
        ("cheeta-run", "unknown DMC domain 'cheeta'.*cheetah"),
        ("cheetah-fly", "unknown task 'fly' for DMC domain 'cheetah'; tasks: run"),
    ],
)
def test_unknown_task_names_list_the_valid_ones(task, message):
    with pytest.raises(ValueError, match=message):
        make_dmc_env(task, seed=0, train=True)


@pytest.mark.parametrize("image_size", [8, 15, 513, 64.0, "64", True, -64])
def test_bad_image_size_is_rejected(image_size):
    with pytest.raises(ValueError, match="image_size"):
        make_dmc_env("cartpole-swingup", seed=0, train=True, image_size=image_size)


def _backend_in_fresh_process(user_backend):
    environment = {key: value for key, value in os.environ.items() if key not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    if user_backend is not None:
        environment["MUJOCO_GL"] = user_backend
    script = (
        "import os\nfrom plastic.envs.dmc import select_rendering_backend\n"
        "print(select_rendering_backend(), os.environ['MUJOCO_GL'])"
    )
    return subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=300)


def test_a_working_backend_is_chosen_and_exported_before_dm_control_loads():
    result = _backend_in_fresh_process(None)
    assert result.returncode == 0, result.stderr
    chosen, exported = result.stdout.split()
    assert chosen in RENDERING_BACKENDS and exported == chosen


def test_an_unusable_user_backend_gives_a_one_line_error_naming_it_and_what_to_install():
    result = _backend_in_fresh_process("no_such_backend")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("plastic.envs.mujoco_gl.RenderingBackendError: no working MuJoCo OpenGL backend")
    assert "MUJOCO_GL set by the user: no_such_backend" in last and "libosmesa6" in last and "libegl1" in last


@pytest.fixture
def fresh_backend_choice(monkeypatch):
    """As if dm_control had not been imported and no backend chosen; restores everything afterwards."""
    monkeypatch.delitem(sys.modules, "dm_control._render", raising=False)
    monkeypatch.setattr(mujoco_gl, "_selected_backend", None)
    for name in ("MUJOCO_GL", "PYOPENGL_PLATFORM"):
        monkeypatch.setenv(name, "placeholder")  # so that monkeypatch restores what select_rendering_backend sets
        monkeypatch.delenv(name)
    tried = []

    def probe(working):
        def probe_backend(backend):
            tried.append(backend)
            return None if backend in working else f"{backend} is broken"

        monkeypatch.setattr(mujoco_gl, "_probe_backend", probe_backend)
        return tried

    return probe


def test_backends_are_tried_in_order_egl_osmesa_glfw_and_the_first_working_one_is_exported(fresh_backend_choice):
    tried = fresh_backend_choice(working={"osmesa", "glfw"})
    assert mujoco_gl.select_rendering_backend() == "osmesa"
    assert tried == ["egl", "osmesa"]
    assert os.environ["MUJOCO_GL"] == "osmesa" and os.environ["PYOPENGL_PLATFORM"] == "osmesa"
    assert mujoco_gl.select_rendering_backend() == "osmesa" and tried == ["egl", "osmesa"]  # chosen once per process


def test_no_working_backend_names_each_one_tried_and_why(fresh_backend_choice):
    tried = fresh_backend_choice(working=set())
    with pytest.raises(RenderingBackendError) as error:
        mujoco_gl.select_rendering_backend()
    assert tried == ["egl", "osmesa", "glfw"]
    message = str(error.value)
    assert "\n" not in message
    assert "tried: egl (egl is broken), osmesa (osmesa is broken), glfw (glfw is broken)" in message
    assert "apt-get install libosmesa6" in message


def test_a_process_forked_after_its_parent_made_a_gl_context_fails_loudly_instead_of_hanging(monkeypatch):
    make_dmc_env("cartpole-swingup", seed=0, train=True).reset()  # this process now holds a GL context
    monkeypatch.setattr(mujoco_gl, "_gl_context_pid", os.getpid() + 1)  # as seen from a forked child
    env = make_dmc_env("cartpole-swingup", seed=0, train=True)
    with pytest.raises(RenderingBackendError, match="'spawn' or 'forkserver'"):
        env.reset()


def test_seed_none_draws_fresh_initial_states():
    first_frames = [make_dmc_env("reacher-easy", seed=None, train=True).reset()[0] for _ in range(2)]
    assert not np.array_equal(*first_frames)
