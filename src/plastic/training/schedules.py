"""When the interventions and probes run: one periodic trigger, shared by the training loop and the synthetic
experiment (BBF's one-line reset trigger is the model).

- resets and shrink & perturb: every `reset.interval` gradient updates (paper §4: 40k on Atari, 100k on DMC);
- ReDo: every `redo.interval` gradient updates (Sokar et al. 2023);
- probes: every `probe.every` agent steps (0 = off);
- synthetic experiment: resets / ReDo every `reset_interval` phases (the paper's interval "in chunks"), probes every
  `probe_every` phases.
Each counts something the checkpoint holds (the agent's updates, the step), so a schedule survives resume.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Every:
    """Due at counts interval, 2 x interval, ...; interval 0 = never."""

    interval: int

    def due(self, count: int) -> bool:
        return self.interval > 0 and count > 0 and count % self.interval == 0
