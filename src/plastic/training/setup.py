"""What a run is built from: its device, agent, replay buffer and env options, and the score it reports (`hns`)."""

from __future__ import annotations

import torch

from plastic.config import TrainConfig
from plastic.training.seeding import RandomStreams


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def make_agent(config: TrainConfig, env, device: torch.device):
    if config.domain_spec.agent == "sac":
        from plastic.agents.sac import SACAgent

        return SACAgent(config, env.observation_space.shape, env.action_space.shape[0], device)
    from plastic.agents.rainbow import RainbowAgent

    return RainbowAgent(config, env.observation_space.shape, int(env.action_space.n), device,
                        observation_high=float(env.observation_space.high.max()))


def make_buffer(config: TrainConfig, env, agent):
    from plastic.replay import ReplayBuffer

    return ReplayBuffer(seed=RandomStreams(config.seed).sequence("replay"), frame_shape=tuple(env.frame_shape),
                        frame_stack=env.frame_stack, **agent.replay_options())


def env_options(config: TrainConfig) -> dict:
    """Options of the run's envs (training and evaluation) that the config sets: DMC's action repeat."""
    return {"action_repeat": config.dmc.action_repeat} if config.domain_spec.action_repeat is None else {}


def human_normalized(env_id: str, score: float) -> float | None:
    """The human-normalized score of a run (`result.json` "hns"); None off Atari or for a game without reference
    scores."""
    from plastic.envs.domains import domain_of
    from plastic.report.scores import normalized_score

    if not domain_of(env_id).human_normalized:
        return None
    try:
        return float(normalized_score(score, env_id))
    except (KeyError, ValueError):
        return None  # a game outside the 26 with no reference scores
