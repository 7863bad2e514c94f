"""DeepMind Control Suite from pixels: the DMC-Medium protocol of the paper (§4, App. A.4, Table 6).

`make_dmc_env("cheetah-run", seed=0, train=True)` returns a gymnasium env whose observations are the last
`frame_stack` rendered frames, uint8 `(frame_stack * C, H, W)`: grayscale 64x64, stack 3 as in Table 6 (C = 1), or RGB
as in the authors' public code (C = 3). Actions are `Box(-1, 1, (A,))`; one agent step repeats the action
`action_repeat` times and sums the raw rewards. An episode is 1,000 simulator (control) steps, i.e.
`1000 / action_repeat` agent steps, and ends with `truncated=True`: DMC tasks have no terminal states.

Action repeat per task (`default_action_repeat`) follows the code the paper builds on (App. A.4: Nikishin et al.
2022, `train_pixels.py`), which uses PlaNet's table keyed by the exact task name (`PLANET_ACTION_REPEAT`:
cartpole-swingup 8, reacher-easy 4, cheetah-run 4, finger-spin 2, ball_in_cup-catch 4, walker-walk 2) and 2 for every
other task. For the 11 DMC-M tasks (`ACTION_REPEAT`) that is 4 for cheetah-run and reacher-easy and 2 for the nine
others; App. A.1 confirms that only 2 and 4 were used. This module imports dm_control only when an env is made, so
the table is available to config resolution without it.

Rendering is almost all of the cost of a step (docs/performance.md). Frames are rendered at the
training size directly (no 84 px render then resize), and by default the offscreen buffer is shrunk to the image
size with a smaller shadow map and no multisampling (`fast_rendering=True`); `benchmarks/dmc_env_speed.py` measures
the speed-up and how close the frames stay.

Headless OpenGL: the MuJoCo backend must be chosen before `dm_control` is imported; `plastic.envs.mujoco_gl` does
that (`select_rendering_backend()`, `RenderingBackendError`, both importable from here too) and makes the GL context.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from plastic.envs.domains import DEFAULT_ACTION_REPEAT, PLANET_ACTION_REPEAT, default_action_repeat  # noqa: F401
from plastic.envs.mujoco_gl import (  # noqa: F401 (RENDERING_BACKENDS, RenderingBackendError: re-exported)
    RENDERING_BACKENDS,
    RenderingBackendError,
    make_camera,
    select_rendering_backend,
)

DMC_MEDIUM_TASKS = (
    "acrobot-swingup",
    "cartpole-swingup_sparse",
    "cheetah-run",
    "finger-turn_easy",
    "finger-turn_hard",
    "hopper-hop",
    "quadruped-run",
    "quadruped-walk",
    "reacher-easy",
    "reacher-hard",
    "walker-run",
)

ACTION_REPEAT = {task: default_action_repeat(task) for task in DMC_MEDIUM_TASKS}

# Camera 0 everywhere except quadruped, whose camera 0 is a far-away "global" view; camera 2 follows the body.
_CAMERA_BY_DOMAIN = {"quadruped": 2}

EPISODE_ENV_STEPS = 1000  # every suite task: 1000 control steps per episode
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 512

# Rendering settings of `fast_rendering=True` (several times faster, near-identical frames: docs/performance.md,
# benchmarks/dmc_env_speed.py).
FAST_SHADOW_SIZE = 512
FAST_OFFSCREEN_SAMPLES = 0

# Model fields that suite tasks rewrite in `initialize_episode` (target positions and sizes, colours, terrain); saved
# in `get_state` so that a restored episode renders and rewards exactly as the original.
_MUTABLE_MODEL_FIELDS = (
    "body_pos", "body_quat", "geom_pos", "geom_size", "geom_rgba", "site_pos", "site_size", "site_rgba",
    "light_pos", "dof_damping", "wrap_prm", "hfield_data",
)  # fmt: skip

# ITU-R BT.601 luma, as in PIL's "L" mode and OpenCV's RGB2GRAY.
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --------------------------------------------------------------------------------------------------------------------
# Task names
# --------------------------------------------------------------------------------------------------------------------


def _suite_tasks() -> dict[str, tuple[str, ...]]:
    select_rendering_backend()  # importing dm_control fixes the OpenGL backend
    from dm_control import suite

    tasks: dict[str, list[str]] = {}
    for domain, task in suite.ALL_TASKS:
        tasks.setdefault(domain, []).append(task)
    return {domain: tuple(names) for domain, names in tasks.items()}


def all_dmc_tasks() -> tuple[str, ...]:
    """Every `<domain>-<task>` of `dm_control.suite` (the 11 of `DMC_MEDIUM_TASKS` are the benchmark)."""
    return tuple(f"{domain}-{task}" for domain, tasks in _suite_tasks().items() for task in tasks)


def parse_task(task: str) -> tuple[str, str]:
    """Splits `<domain>-<task>` and checks both against `dm_control.suite`; ValueError lists the valid names."""
    if not isinstance(task, str) or "-" not in task:
        raise ValueError(f"task must be '<domain>-<task>' such as 'cheetah-run', got {task!r}")
    domain, task_name = task.split("-", 1)
    tasks = _suite_tasks()
    if domain not in tasks:
        raise ValueError(f"unknown DMC domain {domain!r} in task {task!r}; domains: {', '.join(sorted(tasks))}")
    if task_name not in tasks[domain]:
        raise ValueError(
            f"unknown task {task_name!r} for DMC domain {domain!r}; tasks: {', '.join(sorted(tasks[domain]))}"
        )
    return domain, task_name


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------------------------------------------------


class DMCPixelEnv(gym.Env):
    """One DMC task seen through a camera: stacked uint8 frames, repeated actions, 1000-step episodes.

    task: `<domain>-<task>` as in `dm_control.suite`, e.g. `cheetah-run`, `cartpole-swingup_sparse`.
    seed: seeds the task's initial states (`task_kwargs random=seed`); same seed + same actions = same frames;
        None draws fresh entropy. `reset(seed=s)` reseeds.
    train: kept for the common env contract (DMC's env is identical for training and evaluation).
    image_size: square frame side in pixels, 16..512, rendered at that size.
    grayscale: 1 luma channel (the paper) instead of RGB (the authors' public code).
    frame_stack: frames per observation (oldest first).
    action_repeat: simulator steps per agent step; None = `default_action_repeat(task)`.
    camera: MuJoCo camera id; None = 0, or 2 for quadruped.
    time_limit: simulator steps per episode (1000 in the suite; smaller values are for tests).
    fast_rendering: offscreen buffer at the image size, smaller shadow map, no multisampling.

    Attributes the trainer and the replay buffer use: `frame_shape` (C, H, W), `frame_stack`, `action_repeat`,
    `time_limit` (simulator steps per episode), `total_env_steps` (simulator steps since construction: the paper's
    "environment steps", i.e. agent steps x action repeat).
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        task: str,
        *,
        seed: int | None,
        train: bool,
        image_size: int = 64,
        grayscale: bool = True,
        frame_stack: int = 3,
        action_repeat: int | None = None,
        camera: int | None = None,
        time_limit: int = EPISODE_ENV_STEPS,
        fast_rendering: bool = True,
    ):
        domain, task_name = parse_task(task)
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
            raise ValueError(
                f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, got {image_size}"
            )
        self.frame_stack = _check_positive_int("frame_stack", frame_stack)
        self.action_repeat = _check_positive_int(
            "action_repeat", default_action_repeat(task) if action_repeat is None else action_repeat
        )
        self.time_limit = _check_positive_int("time_limit", time_limit)
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        self.task = task
        self.train = bool(train)  # DMC has no train/eval difference in the env itself; kept for the env contract
        self.image_size = int(image_size)
        self.grayscale = bool(grayscale)
        self.camera = _CAMERA_BY_DOMAIN.get(domain, 0) if camera is None else int(camera)
        self.fast_rendering = bool(fast_rendering)

        select_rendering_backend()
        from dm_control import suite

        # The episode length is counted here (time_limit), so dm_control's own limit is switched off.
        task_kwargs = {"random": None if seed is None else int(seed), "time_limit": float("inf")}
        self._dm_env = suite.load(domain, task_name, task_kwargs=task_kwargs)
        self._physics = self._dm_env.physics
        if not 0 <= self.camera < self._physics.model.ncam:
            raise ValueError(f"camera must be in [0, {self._physics.model.ncam}) for {task}, got {camera}")
        self._configure_rendering()
        self._camera = None  # a dm_control Camera, made at the first render (it owns the GL scene)

        spec = self._dm_env.action_spec()
        self._action_low = spec.minimum.astype(np.float64)
        self._action_high = spec.maximum.astype(np.float64)
        channels = 1 if self.grayscale else 3
        self.frame_shape = (channels, self.image_size, self.image_size)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, dtype=np.float32)
        self.observation_space = gym.spaces.Box(
            0, 255, (self.frame_stack * channels, self.image_size, self.image_size), dtype=np.uint8
        )
        self._frames = np.zeros((self.frame_stack, *self.frame_shape), dtype=np.uint8)
        self._needs_reset = True
        self._episode_return = 0.0
        self._episode_length = 0
        self._episode_env_steps = 0
        self.total_env_steps = 0

    # ---- rendering -------------------------------------------------------------------------------------------------
    def _configure_rendering(self) -> None:
        """Sizes the offscreen buffer before the GL context exists (dm_control makes it at the first render)."""
        visual = self._physics.model.vis
        if self.fast_rendering:
            visual.global_.offwidth = self.image_size
            visual.global_.offheight = self.image_size
            visual.quality.shadowsize = FAST_SHADOW_SIZE
            visual.quality.offsamples = FAST_OFFSCREEN_SAMPLES
        else:  # the model's own settings, enlarged only if the image would not fit
            visual.global_.offwidth = max(visual.global_.offwidth, self.image_size)
            visual.global_.offheight = max(visual.global_.offheight, self.image_size)

    def render(self) -> np.ndarray:
        """The current camera image, uint8 (H, W, 3) RGB at the training size."""
        if self._camera is None:
            self._camera = make_camera(self._physics, self.image_size, self.camera)
        return self._camera.render()

    def _observe_frame(self) -> np.ndarray:
        """The current frame in observation layout (C, H, W)."""
        image = self.render()
        if self.grayscale:
            luma = image.astype(np.float32) @ _LUMA_WEIGHTS
            return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[None]
        return np.ascontiguousarray(image.transpose(2, 0, 1))

    def _observation(self) -> np.ndarray:
        return self._frames.reshape(self.observation_space.shape).copy()

    # ---- gymnasium API ---------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:  # reseeds the task's initial-state sampler, as task_kwargs random=seed does
            self._dm_env.task._random = np.random.RandomState(seed)
        self._dm_env.reset()
        self._frames[:] = self._observe_frame()  # k copies of the first frame
        self._needs_reset = False
        self._episode_return = 0.0
        self._episode_length = 0
        self._episode_env_steps = 0
        return self._observation(), {}

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._needs_reset:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset() first")
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(self.action_space.shape), -1.0, 1.0)
        # Agents act in [-1, 1]; map onto the task's actuator range (which is [-1, 1] for every suite task).
        action = self._action_low + (action + 1.0) * 0.5 * (self._action_high - self._action_low)
        reward = 0.0
        env_steps = 0
        terminated = False
        for _ in range(self.action_repeat):
            time_step = self._dm_env.step(action)
            reward += time_step.reward or 0.0
            env_steps += 1
            if time_step.last():  # only a task's own termination: the time limit is ours
                terminated = True
                break
            if self._episode_env_steps + env_steps >= self.time_limit:
                break
        self._episode_env_steps += env_steps
        self.total_env_steps += env_steps
        self._episode_return += reward
        self._episode_length += 1
        truncated = not terminated and self._episode_env_steps >= self.time_limit
        self._frames[:-1] = self._frames[1:]
        self._frames[-1] = self._observe_frame()
        info: dict[str, Any] = {"env_steps": env_steps}
        if terminated or truncated:
            self._needs_reset = True
            info["episode"] = {"return": self._episode_return, "length": self._episode_length}
        return self._observation(), float(reward), terminated, truncated, info

    def close(self) -> None:
        if self._camera is not None:
            self._camera._scene.free()  # noqa: SLF001 (dm_control frees it the same way in Physics.render)
            self._camera = None
        self._physics.free()
        super().close()

    # ---- checkpointing ---------------------------------------------------------------------------------------------
    def get_state(self) -> dict:
        """Everything needed to continue this episode exactly: physics (incl. solver warm start), the task's random
        state, the model fields tasks randomise per episode, the frame stack and the counters."""
        import mujoco

        model = self._physics.model
        return {
            "task": self.task,
            "frame_shape": self.frame_shape,
            "frame_stack": self.frame_stack,
            "physics": self._physics.get_state(sig=mujoco.mjtState.mjSTATE_INTEGRATION).copy(),
            "model": {name: getattr(model, name).copy() for name in _MUTABLE_MODEL_FIELDS},
            "task_random": self._dm_env.task.random.get_state(),
            "frames": self._frames.copy(),
            "needs_reset": self._needs_reset,
            "episode_return": self._episode_return,
            "episode_length": self._episode_length,
            "episode_env_steps": self._episode_env_steps,
            "total_env_steps": self.total_env_steps,
        }

    def set_state(self, state: dict) -> None:
        """Restores `get_state()`'s dict (from an env made for the same task and image settings; any seed)."""
        import mujoco

        for key, mine in (("task", self.task), ("frame_shape", self.frame_shape), ("frame_stack", self.frame_stack)):
            if tuple(np.atleast_1d(state[key])) != tuple(np.atleast_1d(mine)):
                raise ValueError(f"state was saved with {key}={state[key]!r}, this env has {key}={mine!r}")
        model = self._physics.model
        hfield_changed = not np.array_equal(model.hfield_data, state["model"]["hfield_data"])
        for name, value in state["model"].items():
            getattr(model, name)[...] = value
        self._physics.set_state(np.asarray(state["physics"]), sig=mujoco.mjtState.mjSTATE_INTEGRATION)
        self._physics.forward()  # derived quantities (body poses for rendering) from the restored state
        if hfield_changed and self._physics._contexts:  # noqa: SLF001 (terrain lives on the GL side too)
            with self._physics.contexts.gl.make_current() as context:
                for index in range(model.nhfield):
                    context.call(mujoco.mjr_uploadHField, model.ptr, self._physics.contexts.mujoco.ptr, index)
        self._dm_env.task.random.set_state(state["task_random"])
        self._dm_env._reset_next_step = False  # noqa: SLF001 (we track episode ends ourselves)
        self._frames[:] = state["frames"]
        self._needs_reset = bool(state["needs_reset"])
        self._episode_return = float(state["episode_return"])
        self._episode_length = int(state["episode_length"])
        self._episode_env_steps = int(state["episode_env_steps"])
        self.total_env_steps = int(state["total_env_steps"])


def make_dmc_env(task: str, *, seed: int | None, train: bool, **options: Any) -> DMCPixelEnv:
    """A DMC task from pixels with the paper's protocol (Table 6: 64x64 grayscale, stack 3): `DMCPixelEnv(task,
    seed=seed, train=train, **options)`; the options (image_size, grayscale, frame_stack, action_repeat, camera,
    time_limit, fast_rendering) are documented on `DMCPixelEnv`."""
    return DMCPixelEnv(task, seed=seed, train=train, **options)
