"""The training loop (paper Algorithm 1 / 2): act, store, `replay_ratio` gradient updates per agent step, hooks.

Data flows one way: config -> env + agent + replay -> this loop (hooks call the plasticity interventions and the
probes) -> run directory (`config.json`, `metrics.jsonl`, `tb/`, `checkpoints/`, `result.json`) -> `plastic report`.

Exact resume: all randomness lives in explicit, checkpointed state (the agent's torch generators and numpy RNG, the
replay buffer's RNG, the env's full state including the emulator's RNG, the probes' generators), each an independent
stream of the seed (`training/seeding.py`), so on CPU a run killed at any point and resumed from its last checkpoint
ends identical to the same run without interruption.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
import warnings
from collections import deque
from pathlib import Path

import numpy as np
import torch

from plastic import __version__
from plastic.config import TrainConfig, save as save_config
from plastic.runtime import tune_allocator
from plastic.training.checkpoint import load_checkpoint, load_latest_checkpoint, save_checkpoint
from plastic.training.evaluation import evaluate
from plastic.training.files import atomic_write_text
from plastic.training.hooks import build_hooks
from plastic.training.logger import RunLogger
from plastic.training.seeding import RandomStreams
from plastic.training.setup import env_options, human_normalized, make_agent, make_buffer, resolve_device

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was written and the run can be resumed."""

    def __init__(self, signum: int, checkpoint: Path):
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpoint {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint


@contextlib.contextmanager
def stop_signals(handler):
    """Within the block SIGINT/SIGTERM only call `handler` (which sets a `stop_signal`: the loop checkpoints at the
    end of the step and stops); the previous handlers come back on exit."""
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: Path, *, progress: bool = True):
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.stop_signal: int | None = None

    # ------------------------------------------------------------------------------------------------- set-up
    def _build(self, resume: bool):
        from plastic.envs import make_env

        config = self.config
        tune_allocator()
        # Process-wide, the thread pool included; False where the CPU has no flush-to-zero mode (then IEEE it is).
        if not torch.set_flush_denormal(config.flush_denormal) and config.flush_denormal:
            warnings.warn("flush_denormal = true, but this CPU cannot flush subnormal floats; they stay IEEE",
                          stacklevel=2)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)  # nothing should draw from the global RNG; this pins it if something does
        self.device = resolve_device(config.device)
        self.env = make_env(config.env, seed=RandomStreams(config.seed).int_seed("env"), train=True,
                            **env_options(config))
        self.agent = make_agent(config, self.env, self.device)
        if config.backbone_checkpoint:
            from plastic.training.pretrained import apply_pretrained_backbone

            apply_pretrained_backbone(self.agent, config.backbone_checkpoint, config.freeze_backbone, load=not resume)
        elif config.freeze_backbone:
            raise ValueError("--freeze-backbone needs --backbone-checkpoint PATH")
        self.buffer = make_buffer(config, self.env, self.agent)
        self.hooks = build_hooks(config)
        self.env_steps_per_step = config.action_repeat  # DMC's action repeat, Atari's frame skip, MinAtar 1

    def _state(self, replay: bool = True) -> dict:
        return {
            "agent": self.agent.state_dict(),
            "buffer": self.buffer.state_dict() if replay else None,
            "env": self.env.get_state(),
            "obs": self.obs,
            "logger": self.logger.state_dict(),
            "elapsed_s": self.elapsed(),
            "update_time_s": self.update_time_s,
            "recent_returns": list(self.recent_returns),
            "episodes": self.episodes,
            "hooks": {type(hook).__name__: hook.state_dict() for hook in self.hooks},
        }

    def _restore(self, path: Path | None = None) -> dict:
        """The inverse of `_state`: continue from checkpoint `path` (default: the run directory's latest); returns
        the logger's state."""
        if path is None:
            loaded = load_latest_checkpoint(self.run_dir)
            if loaded is None:
                raise ValueError(f"{self.run_dir} has no readable checkpoint to resume from")
            state, path = loaded
        else:
            state = load_checkpoint(path)
        self.agent.load_state_dict(state["agent"])
        if state["buffer"] is None:
            raise ValueError(f"{path} holds no replay buffer (the run finished without --keep-replay): it can be "
                             "evaluated or fine-tuned from, not continued")  # fmt: skip
        self.buffer.load_state_dict(state["buffer"])
        self.env.set_state(state["env"])
        self.obs = state["obs"]
        self.step = state["step"]
        self.episodes = state["episodes"]
        self.update_time_s = state["update_time_s"]
        self.elapsed_before = state["elapsed_s"]
        self.recent_returns.extend(state["recent_returns"])
        for hook in self.hooks:  # checkpoints from before hooks had state have no "hooks"
            if type(hook).__name__ in state.get("hooks", {}):
                hook.load_state_dict(state["hooks"][type(hook).__name__])
        print(f"resuming {self.run_dir} from {path.name} (step {self.step:,})", flush=True)
        return state["logger"]

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    # ------------------------------------------------------------------------------------------------- run
    def run(self, resume: bool = False) -> dict:
        self.open(resume)
        try:
            with stop_signals(self._on_signal):
                self._loop()
                return self.finish()
        finally:
            self.close()

    def open(self, resume: bool, checkpoint: Path | None = None, *, quiet: bool = False) -> None:
        """Build the run and start it, or continue it from `checkpoint` (default: the latest) when `resume`;
        `quiet`: no run header (a seed group prints one for all its members)."""
        config = self.config
        self._build(resume)
        self.step, self.episodes, self.update_time_s, self.elapsed_before = 0, 0, 0.0, 0.0
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.last_update_metrics: dict[str, float] = {}
        self.updates_per_s = math.nan  # the last logged window's rate, shown by the progress bar until the next one
        logger_state = None
        if resume:
            logger_state = self._restore(checkpoint)
        else:
            self.obs, _ = self.env.reset()
            self.buffer.start_episode(self.obs)
            save_config(config, self.run_dir / CONFIG_FILE)
        self.started = time.perf_counter()
        wandb_config = None
        if config.wandb:
            from plastic.config import to_dict

            wandb_config = {"project": config.wandb_project, **to_dict(config)}
        if not resume and not quiet:
            self._print_header()  # before the progress bar, so that the bar stays below it
        self.logger = RunLogger(self.run_dir, total_steps=config.steps, start_step=self.step, state=logger_state,
                                progress=self.progress, wandb_config=wandb_config)
        # Schedules over the updates (Rainbow's importance exponent) run from 0 at the first update (the step that
        # reaches learning_starts) to 1 at the last step.
        self.first_update_step = max(self.agent.learning_starts, 1)
        self._start_window()

    def close(self) -> None:
        self.logger.close()
        self.env.close()

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum

    def _print_header(self) -> None:
        config = self.config
        from plastic.agents.base import count_parameters

        params = count_parameters(self.agent.probe_model)
        compiled = "off" if not config.compile_enabled else "on" if config.compile_mode == "default" else \
            f"on ({config.compile_mode})"
        print(f"plastic-rl {__version__} | run {self.run_dir}", flush=True)
        print(f"env {config.env} | preset {config.preset} | methods {','.join(config.methods) or 'none'} | "
              f"replay ratio {config.replay_ratio} | seed {config.seed} | steps {config.steps:,} "
              f"(env steps {config.env_steps:,}, action repeat {config.action_repeat}) | "
              f"device {self.device} | threads {torch.get_num_threads()} | "
              f"compile {compiled} | precision {config.precision}", flush=True)
        print(f"parameters: {params:,} ({params / 1e6:.2f}M) in the online network", flush=True)
        if config.backbone_checkpoint:
            state = "frozen" if config.freeze_backbone else "trained"
            print(f"backbone loaded from {config.backbone_checkpoint} ({state})", flush=True)

    def _loop(self) -> None:
        """Algorithm 1 / 2: act, store, `replay_ratio` updates per agent step (hooks after each), hooks per step."""
        while self.step < self.config.steps:
            metrics = self.env_step()
            if self.updating:
                metrics.update(self._replay_updates(self.update_progress))
            self.end_step(metrics)
            self._checkpoint_or_stop()

    # ------------------------------------------------------------------------------------------------- loop helpers
    def env_step(self) -> dict[str, float]:
        """Act, step the env, store the transition; the finished episode's return, if any."""
        action = self.agent.act(self.obs, self.step)
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.buffer.add(action, self.agent.transform_reward(reward), next_obs, terminated, truncated)
        self.step += 1
        return self._episode_end(info, next_obs, terminated or truncated)

    @property
    def updating(self) -> bool:
        return self.step >= self.agent.learning_starts

    @property
    def update_progress(self) -> float:
        """Where this step's updates are in the updates' schedule: 0 at the first update, 1 at the last step."""
        return (self.step - self.first_update_step) / max(self.config.steps - self.first_update_step, 1)

    def end_step(self, metrics: dict[str, float]) -> None:
        """The hooks' per-step work, then logging (evaluation when due) and progress."""
        for hook in self.hooks:
            metrics.update(hook.after_step(self.agent, self.buffer, self.step))
        self._log(metrics)

    def _episode_end(self, info: dict, next_obs, done: bool) -> dict[str, float]:
        """Record a finished game's return (`info["episode"]`) and start the next episode when this one ended."""
        metrics: dict[str, float] = {}
        if "episode" in info:
            self.episodes += 1
            self.recent_returns.append(float(info["episode"]["return"]))
            metrics["charts/episodic_return"] = float(info["episode"]["return"])
            metrics["charts/episodic_length"] = float(info["episode"]["length"])
        if done:
            self.obs, _ = self.env.reset()
            self.buffer.start_episode(self.obs)
        else:
            self.obs = next_obs
        return metrics

    def _replay_updates(self, progress: float) -> dict[str, float]:
        """`replay_ratio` gradient updates, each followed by the hooks' `after_update`; timed for updates/s."""
        started, metrics = time.perf_counter(), {}
        for _ in range(self.config.replay_ratio):
            metrics.update(self.after_update(self.agent.update(self.buffer, progress=progress)))
        self.count_update_time(time.perf_counter() - started, self.config.replay_ratio)
        return metrics

    def after_update(self, losses: dict[str, float]) -> dict[str, float]:
        """Keep the update's losses for the next log line; the hooks' `after_update` metrics."""
        self.last_update_metrics, metrics = losses, {}
        for hook in self.hooks:
            metrics.update(hook.after_update(self.agent, self.buffer))
        return metrics

    def count_update_time(self, seconds: float, updates: int) -> None:
        self.update_time_s += seconds
        self.window_update_time += seconds
        self.window_updates += updates

    def _start_window(self) -> None:
        """A logging window: the steps and updates since the last log line, for steps/s and updates/s."""
        self.window_start, self.window_step = time.perf_counter(), self.step
        self.window_updates, self.window_update_time = 0, 0.0

    def _log(self, metrics: dict[str, float]) -> None:
        """Rates and the last update's losses every `log_every` steps, evaluation every `eval_every`, progress."""
        config, now = self.config, time.perf_counter()
        if self.step % config.log_every == 0 or self.step == config.steps:
            metrics["charts/SPS"] = (self.step - self.window_step) / max(now - self.window_start, 1e-9)
            if self.window_updates:
                self.updates_per_s = self.window_updates / max(self.window_update_time, 1e-9)
                metrics["charts/updates_per_s"] = self.updates_per_s
            metrics.update(self.last_update_metrics)
            self._start_window()
        if config.eval_every and self.step % config.eval_every == 0 and self.step < config.steps:
            returns = self._evaluate(config.eval_episodes, seed_offset=self.step)
            metrics["eval/return_mean"] = float(np.mean(returns))
        if metrics:
            self.logger.log(self.step, self.elapsed(), metrics)
        if self.step % 50 == 0 or self.step == config.steps:
            recent = float(np.mean(self.recent_returns)) if self.recent_returns else math.nan
            self.logger.progress(self.step, ups=self.updates_per_s, ret=recent)

    def _checkpoint_or_stop(self) -> None:
        """Every `checkpoint_every` steps a checkpoint; on SIGINT/SIGTERM one more, then `TrainingInterrupted`."""
        if self.stop_signal is not None:
            raise TrainingInterrupted(self.stop_signal, self.save())
        if self.checkpoint_due:
            self.save()

    @property
    def checkpoint_due(self) -> bool:
        return self.step % self.config.checkpoint_every == 0 and self.step < self.config.steps

    def save(self, keep: int | None = None) -> Path:
        """A checkpoint of this step; the newest `keep` (default `keep_checkpoints`) are kept."""
        return save_checkpoint(self.run_dir, self.step, self._state(), keep or self.config.keep_checkpoints)

    def _evaluate(self, episodes: int, seed_offset: int = 0) -> list[float]:
        # Evaluation has its own RNG and envs, so it never changes the training run's randomness.
        rng, env_seed = RandomStreams(self.config.seed).evaluation(seed_offset)
        return evaluate(self.agent.evaluation_policy(rng), self.config.env, episodes=episodes,
                        num_envs=self.config.eval_envs, seed=env_seed, env_options=env_options(self.config))

    def _random_policy_score(self) -> float | None:
        """A random policy's score under the same evaluation protocol (`random_policy_score`), for the summary."""
        from plastic.training.evaluation import random_policy_score

        space = self.env.action_space
        _, env_seed = RandomStreams(self.config.seed).evaluation(0)
        return random_policy_score(self.config.env, int(space.n) if hasattr(space, "n") else None,
                                   episodes=self.config.eval_episodes, seed=env_seed,
                                   env_options=env_options(self.config))

    def finish(self) -> dict:
        config = self.config
        save_checkpoint(self.run_dir, self.step, self._state(), config.keep_checkpoints)
        train_time = self.elapsed()
        eval_returns = self._evaluate(config.eval_episodes)
        eval_mean = float(np.mean(eval_returns))
        random_score = self._random_policy_score()
        from plastic.agents.base import count_parameters

        result = {
            "env": config.env,
            "preset": config.preset,
            "methods": config.methods,
            "method": config.method_label,
            "replay_ratio": config.replay_ratio,
            "seed": config.seed,
            "steps": config.steps,
            "env_steps": config.env_steps,
            "eval_returns": eval_returns,
            "eval_mean": eval_mean,
            "hns": human_normalized(config.env, eval_mean),
            "random_score": random_score,
            "wall_time_s": round(self.elapsed(), 3),
            "train_time_s": round(train_time, 3),
            "updates": self.agent.updates,
            "updates_per_s": self.agent.updates / self.update_time_s if self.update_time_s else 0.0,
            "env_steps_per_s": self.step * self.env_steps_per_step / train_time,  # agent steps x action_repeat
            "num_parameters": count_parameters(self.agent.probe_model),
            "plastic_version": __version__,
        }
        self.logger.log(self.step, self.elapsed(), {"eval/return_mean": eval_mean})
        atomic_write_text(self.run_dir / RESULT_FILE, json.dumps(result, indent=2) + "\n")
        if not config.keep_replay:  # the replay is most of a checkpoint (Atari: ~0.7 GB); eval/fine-tuning need none
            save_checkpoint(self.run_dir, self.step, self._state(replay=False), keep=1)
        hns = f" | HNS {result['hns']:.3f}" if result["hns"] is not None else ""
        baseline = f" (random policy: {random_score:.2f})" if random_score is not None else ""
        print(f"\nfinished {config.env} {config.method_label} seed {config.seed}: eval return "
              f"{eval_mean:.2f} ± {np.std(eval_returns):.2f} over {len(eval_returns)} episodes{baseline}{hns} | "
              f"{result['wall_time_s'] / 60:.1f} min | {result['updates_per_s']:.1f} updates/s | "
              f"{result['env_steps_per_s']:.0f} env steps/s", file=sys.stdout, flush=True)
        return result
