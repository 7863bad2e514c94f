"""Fine-tuning from a pretrained backbone (paper §4.4, Table 3).

`--backbone-checkpoint PATH` loads the agent's encoder (the Rainbow `backbone`, the SAC `encoder`) from:
- a `plastic train` run directory: its latest readable checkpoint;
- a checkpoint file written by `plastic train` (`checkpoints/step_*.pt`);
- a plain PyTorch state dict (`torch.save(module.state_dict(), path)`), whose keys are mapped to the encoder's by
  stripping, in this order, the first of the prefixes `online.backbone.`, `backbone.`, `online.encoder.`,
  `encoder.`, `module.` that every key carries; keys are then compared with the encoder's own
  (`plastic train --env ... --list-config` does not show them; `agent.backbone_modules()[0][0].state_dict()`
  does).
The encoder is what the agent names in `backbone_modules()`, and a checkpoint's encoder weights are what the agent
kind reads from its own state with `backbone_state()` (agents/base.py): this module knows no checkpoint keys.
The target network's encoder gets the same weights. `--freeze-backbone` stops its gradients: the optimizer then
skips it, SAM neither perturbs it nor counts it in the norm (its gradient is None), and shrink & perturb leaves it
alone, so Reset† (soft reset of the backbone, hard reset of the head) applies to what is trained.
"""

from __future__ import annotations

from pathlib import Path

import torch

PREFIXES = ("online.backbone.", "backbone.", "online.encoder.", "encoder.", "module.")


def _state_from_checkpoint(state: dict, agent=None) -> dict[str, torch.Tensor]:
    """The encoder in a plastic checkpoint, read by `agent`'s kind first, then by the other agent kinds (so that a
    checkpoint of the other kind fails on its keys and shapes, naming them)."""
    from plastic.agents.rainbow import RainbowAgent
    from plastic.agents.sac import SACAgent

    kinds = ([type(agent)] if agent is not None else []) + [RainbowAgent, SACAgent]
    for kind in kinds:
        encoder = kind.backbone_state(state["agent"])
        if encoder is not None:
            return encoder
    raise ValueError("the checkpoint holds no agent encoder")


def read_backbone_state(path: str | Path, agent=None) -> dict[str, torch.Tensor]:
    """The encoder weights stored at `path` (run dir, plastic checkpoint, or state dict), with prefixes stripped;
    `agent`: the agent they are for (its kind reads a plastic checkpoint first)."""
    from plastic.training.checkpoint import load_latest_checkpoint

    path = Path(path)
    if path.is_dir():
        loaded = load_latest_checkpoint(path)
        if loaded is None:
            raise ValueError(f"--backbone-checkpoint {path}: the run directory has no readable checkpoint")
        state = _state_from_checkpoint(loaded[0], agent)
    elif path.is_file():
        try:
            raw = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:
            raise ValueError(f"--backbone-checkpoint {path}: unreadable ({type(error).__name__}: {error})") from None
        if isinstance(raw, dict) and "agent" in raw and raw.get("complete"):
            state = _state_from_checkpoint(raw, agent)
        elif isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
            state = raw
        else:
            raise ValueError(f"--backbone-checkpoint {path}: neither a plastic checkpoint nor a state dict of tensors")
    else:
        raise ValueError(f"--backbone-checkpoint {path}: no such file or directory")
    for prefix in PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    return state


def load_backbone_(encoder: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy `state` into `encoder`; missing, unexpected or mis-shaped keys are a ValueError listing them all."""
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs encoder {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(f"shape mismatches [{'; '.join(shapes)}]")
    if problems:
        raise ValueError(f"backbone from {source} does not fit the encoder: {', '.join(problems)}")
    encoder.load_state_dict(state)


def apply_pretrained_backbone(agent, path: str | Path, freeze: bool, load: bool = True) -> None:
    """Load the encoder of `agent` (and its target twin) from `path`; optionally freeze it. `load=False` (resuming:
    the run's own checkpoint holds the weights) only freezes."""
    state = read_backbone_state(path, agent) if load else None
    for online, target in agent.backbone_modules():
        if state is not None:
            load_backbone_(online, state, str(path))
            if target is not None:
                target.load_state_dict(online.state_dict())
        if freeze:
            for parameter in online.parameters():
                parameter.requires_grad_(False)
