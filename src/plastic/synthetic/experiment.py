"""The phases loop of the synthetic experiments (paper §3, App. A.2), one seed at a time, seeds in worker processes.

One run = one (scenario, method, hyper-parameters, seed): `phases` phases of `updates_per_phase` SGD(+momentum)
updates on batches of 128 drawn uniformly (with replacement) from

- input adaptation: the buffer of the first `phase + 1` chunks of the shuffled training set;
- label adaptation: the whole training set with labels `label_map[phase][y]`.

After every phase the test accuracy is measured (test labels mapped the same way); every `probe_every` phases the
probes λmax (`plastic.probes.hessian_max_eigenvalue`) and active units (`active_unit_fraction`) on `probe_samples`
examples of the current training data. Probes draw from their own generator, so they never change the run.

Methods are switches of the toolkit (`plastic.plasticity`): LN and CReLU are in the model (`model.py`), SAM wraps the
SGD optimizer, Reset re-draws the head (the three FC layers; `reset_layers` fewer) at the start of every
`reset_interval`-th phase (the paper's interval "in chunks"; `reset_optimizer` also clears their momentum), ReDo
re-initialises dormant units on the same schedule. The later interventions (docs/toolkit.md) use the training runs'
wiring (`plastic.agents.interventions`) with their config sections' defaults: L2-init, Parseval and C-CHAIN's loss terms in
both SAM passes (C-CHAIN's reference batch: a second draw from the buffer), NaP's projection and Hare & Tortoise
after every update (the hare reset every `reset_interval` phases' updates), ReGraMa on the ReDo schedule (tau 0).
`toolkit_probes` adds the toolkit's probes to the probe phases.

Many runs: `run_many` (`pool.py`) trains one seed after another in each of `workers` 1-thread processes. The method
grammar is `methods.py`, the image layouts `images.py`, the reset / probe schedules `plastic.training.schedules`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from plastic.plasticity.sam import sam_update
from plastic.synthetic.data import LABEL_MAP_MODES, ImageDataset, chunk_indices, label_permutations
from plastic.synthetic.images import _Images
from plastic.synthetic.methods import PLASTIC, SWITCHES, Method, parse_methods  # noqa: F401 (re-exported)
from plastic.synthetic.model import ModelConfig, build_model
from plastic.training.schedules import Every

SCENARIOS = ("input", "label")


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs besides the data and the seed. Field names are the CLI flags."""

    scenario: str = "input"
    """`input` (growing buffer of chunks) or `label` (classes re-assigned every phase)."""
    method: Method = field(default_factory=Method)
    lr: float = 0.01
    weight_decay: float = 1e-4
    momentum: float = 0.9
    rho: float = 0.1
    """SAM perturbation radius (paper sweep {0.1, 0.03, 0.01})."""
    reset_interval: int = 10
    """Reset (and ReDo) every this many phases = chunks (paper sweep {5, 10, 20})."""
    reset_optimizer: bool = True
    """On a reset, also clear the reset layers' momentum."""
    reset_layers: int = 3
    """Reset re-draws the head's last this many FC layers: 3 = the whole head, 512-128-10 (App. A.2 names the three
    FC layers the head; §3's "last few layers"), 1 = the output layer only (docs/deviations.md)."""
    redo_tau: float = 0.1
    """ReDo's dormancy threshold."""
    batch_size: int = 128
    phases: int = 100
    updates_per_phase: int = 500
    strides: tuple[int, ...] | None = None
    """Conv strides; None = the paper's (3, 3, 1) where they fit, else the digits model's 2x2 convs with strides
    (2, 2, 2) (`model.default_architecture`); (3, 1, 1) = public code."""
    label_map: str = "permutation"
    """`permutation` (paper) or `shift` ((y + phase) mod classes, public code)."""
    probe_every: int = 25
    """Probe λmax and active units every this many phases (and after the last); 0 = never."""
    probe_samples: int = 512
    hessian_iters: int = 20
    toolkit_probes: bool = False
    """Also probe effective/stable rank, GraMa, the Hessian trace and, over the probe phase's last update, churn and
    the effective learning rate (names as in training runs: `probes/<name>/<layer>`)."""

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario={self.scenario!r}; allowed: {', '.join(SCENARIOS)}")
        if self.label_map not in LABEL_MAP_MODES:
            raise ValueError(f"label_map={self.label_map!r}; allowed: {', '.join(LABEL_MAP_MODES)}")
        for name in ("phases", "updates_per_phase", "batch_size", "reset_interval", "probe_samples", "hessian_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        fc_layers = len(ModelConfig.hidden) + 1
        if not 1 <= self.reset_layers <= fc_layers:
            raise ValueError(f"reset_layers={self.reset_layers}: the head has {fc_layers} FC layers; "
                             f"allowed 1..{fc_layers}")
        if self.probe_every < 0:
            raise ValueError(f"probe_every={self.probe_every} must be >= 0")
        for name in ("lr", "rho"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be > 0")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("weight_decay must be >= 0 and momentum in [0, 1)")

    def hyperparameters(self) -> dict[str, Any]:
        """The hyper-parameters that matter for this method (what a sweep varies and results record)."""
        chosen: dict[str, Any] = {"lr": self.lr, "weight_decay": self.weight_decay}
        if "sam" in self.method:
            chosen["rho"] = self.rho
        if {"reset", "redo", "regrama", "hare_tortoise"} & set(self.method.switches):
            chosen["reset_interval"] = self.reset_interval
        return chosen


def _make_optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    kwargs = dict(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if "sam" in config.method:
        from plastic.plasticity import SAM

        return SAM(model.parameters(), torch.optim.SGD, rho=config.rho, **kwargs)
    return torch.optim.SGD(model.parameters(), foreach=True, **kwargs)


def _train_step(forward, optimizer, x, y, interventions=None, reference=None) -> float:
    """One SGD (or SAM) update of the model behind `forward` (the model, or its `forward_patches`) on (x, y), with
    the interventions' loss terms in both passes and their after-step calls."""
    if interventions is None:
        loss = F.cross_entropy(forward(x), y)
        sam_update(optimizer, loss, lambda: F.cross_entropy(forward(x), y))  # SAM: Algorithm 1's two passes
        return float(loss.detach())
    loss = F.cross_entropy(forward(x), y)
    sam_update(optimizer, loss + interventions.penalty(reference),
               lambda: F.cross_entropy(forward(x), y) + interventions.penalty(reference))
    interventions.after_step(optimizer, loss)
    return float(loss.detach())


def _interventions(model, config: RunConfig):
    """The toolkit's update-time interventions of the method (None when it has none), at their defaults."""
    from plastic import config as sections
    from plastic.agents.interventions import Interventions

    method = config.method
    chosen = {name: cls(enabled=name in method) for name, cls in (
        ("l2_init", sections.L2InitConfig), ("parseval", sections.ParsevalConfig), ("c_chain", sections.CChainConfig),
        ("nap", sections.NaPConfig), ("hare_tortoise", sections.HareTortoiseConfig))}
    if not any(section.enabled for section in chosen.values()):
        return None
    return Interventions(model, chosen, hare_interval=config.reset_interval * config.updates_per_phase)


# Evaluation batch: small enough for the activations to stay in cache (docs/performance.md).
EVAL_BATCH = 256


@torch.no_grad()
def _accuracy(forward, inputs: Callable[[int, int], torch.Tensor], labels: torch.Tensor,
              batch: int = EVAL_BATCH) -> float:
    """Fraction correct of `forward` on `inputs(start, stop)`, batch by batch."""
    correct = 0
    for start in range(0, len(labels), batch):
        logits = forward(inputs(start, start + batch))
        correct += int((logits.argmax(dim=1) == labels[start : start + batch]).sum())
    return correct / len(labels)


def _probe(model, x, y, generator: torch.Generator, iters: int) -> dict[str, float]:
    from plastic.probes import active_unit_fraction, hessian_max_eigenvalue

    params = [p for p in model.parameters() if p.requires_grad]
    eigenvalue = hessian_max_eigenvalue(lambda: F.cross_entropy(model(x), y), params, iters=iters, generator=generator)
    active = active_unit_fraction(model, x)
    # The training runs' metric names (training/hooks.py, metrics.jsonl).
    return {"probes/hessian_max_eigenvalue": eigenvalue,
            **{f"probes/active_unit_fraction/{key}": value for key, value in active.items()}}


def run_seed(
    dataset: ImageDataset,
    config: RunConfig,
    seed: int,
    on_phase: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Train one seed; return one row per phase (scenario, method, seed, phase, test_accuracy, train_loss, probes).

    `seed` fixes everything: the initialisation, the chunk order, the label maps, the batches and the resets.
    """
    method = config.method
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(
            dataset.image_shape, dataset.num_classes, config.strides, layer_norm="ln" in method or "nap" in method,
            crelu="crelu" in method,
        )
    optimizer = _make_optimizer(model, config)
    interventions = _interventions(model, config)
    generator = torch.Generator().manual_seed(seed)
    probe_generator = torch.Generator().manual_seed(seed + 1_000_003)

    # Training and test accuracy take the patch path where the architecture allows it (model.patch_rows: same
    # values, faster); probes and ReDo see whole images through the ordinary forward.
    train_x, test_x = _Images(dataset.train_images, model), _Images(dataset.test_images, model)
    train_y, test_y = torch.from_numpy(dataset.train_labels), torch.from_numpy(dataset.test_labels)
    if config.scenario == "input" and len(train_y) < config.phases:
        raise ValueError(f"{len(train_y)} training examples cannot make phases={config.phases} chunks")
    chunks = [torch.from_numpy(c) for c in chunk_indices(len(train_y), config.phases, seed)]
    label_maps = torch.from_numpy(label_permutations(config.phases, dataset.num_classes, config.label_map, seed))

    schedule, probes = Every(config.reset_interval), Every(config.probe_every)  # in phases
    rows: list[dict[str, Any]] = []
    for phase in range(config.phases):
        if config.scenario == "input":
            buffer = torch.cat(chunks[: phase + 1])
            labels, test_labels = train_y, test_y
        else:
            buffer = torch.arange(len(train_y))
            labels, test_labels = label_maps[phase][train_y], label_maps[phase][test_y]

        if schedule.due(phase):
            head = buffer[: config.probe_samples]
            _intervene(model, optimizer, config, train_x.whole(head), generator, labels[head])

        last = phase == config.phases - 1
        probing = probes.due(phase + 1) or (config.probe_every and last)
        losses, measured = [], {}
        for update in range(config.updates_per_phase):
            index = buffer[torch.randint(len(buffer), (config.batch_size,), generator=generator)]
            reference = None
            if interventions is not None and interventions.needs_reference:
                reference = train_x.whole(buffer[torch.randint(len(buffer), (config.batch_size,), generator=generator)])
            before = None
            if probing and config.toolkit_probes and update == config.updates_per_phase - 1:
                pick = buffer[torch.randint(len(buffer), (config.probe_samples,), generator=probe_generator)]
                before = _snapshot(model, train_x.whole(pick))
            losses.append(_train_step(train_x.forward, optimizer, train_x.batch(index), labels[index], interventions,
                                      reference))
            if before is not None:
                measured = _measure_update(model, before)

        row: dict[str, Any] = {
            "scenario": config.scenario,
            "method": method.name,
            "seed": seed,
            "phase": phase,
            "test_accuracy": _accuracy(test_x.forward, test_x.range, test_labels),
            "train_loss": float(np.mean(losses[-max(1, len(losses) // 10) :])),
        }
        if probing:
            pick = buffer[torch.randint(len(buffer), (config.probe_samples,), generator=probe_generator)]
            row.update(_probe(model, train_x.whole(pick), labels[pick], probe_generator, config.hessian_iters))
            if config.toolkit_probes:
                row.update(measured)
                row.update(_toolkit_probes(model, train_x.whole(pick), labels[pick], probe_generator))
        rows.append(row)
        if on_phase is not None:
            on_phase(1)
    return rows


def _snapshot(model, inputs: torch.Tensor) -> dict:
    from plastic.probes import OutputChurn, parameter_snapshot

    churn = OutputChurn(model, inputs)
    churn.snapshot()
    return {"parameters": parameter_snapshot(model), "churn": churn}


def _measure_update(model, before: dict) -> dict[str, float]:
    """Churn and the effective learning rate over the one update since `_snapshot`."""
    from plastic.probes import effective_learning_rate

    return {**{f"probes/churn/{k}": v for k, v in before["churn"].measure().items()},
            **{f"probes/effective_learning_rate/{k}": v
               for k, v in effective_learning_rate(before["parameters"], model).items()}}


def _toolkit_probes(model, x, y, generator: torch.Generator) -> dict[str, float]:
    from plastic.probes import effective_rank, gradient_dormant_fraction, hessian_trace, stable_rank
    from plastic.probes.activity import activation_modules, capture_outputs

    metrics: dict[str, float] = {}
    captured = capture_outputs(model, x, activation_modules(model),
                               lambda module, out: out.detach().reshape(out.shape[0], -1))
    for layer, calls in captured.items():
        metrics[f"probes/effective_rank/{layer}"] = effective_rank(calls[0])
        metrics[f"probes/stable_rank/{layer}"] = stable_rank(calls[0])

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    metrics.update({f"probes/grama/{k}": v for k, v in gradient_dormant_fraction(model, loss).items()})
    metrics.update({f"probes/hessian_trace/{k}": v
                    for k, v in hessian_trace(loss, model, samples=20, generator=generator).items()})
    return metrics


def _intervene(model, optimizer, config: RunConfig, inputs: torch.Tensor, generator: torch.Generator,
               labels: torch.Tensor | None = None) -> None:
    """Reset the head's last `reset_layers` FC layers / ReDo (ReGraMa) the dormant units at the start of a phase on
    the reset schedule."""
    if "reset" in config.method:
        from plastic.plasticity.reset import clear_optimizer_states_, reset_twins_

        touched = reset_twins_([(model.last_layers(config.reset_layers), None)], generator)
        clear_optimizer_states_([optimizer], touched, "reset" if config.reset_optimizer else "none")
    if "redo" in config.method:
        from plastic.plasticity import redo_

        redo_(model, inputs, tau=config.redo_tau, optimizer=optimizer, generator=generator)
    if "regrama" in config.method:
        from plastic.plasticity.regrama import regrama_

        regrama_(model, lambda: F.cross_entropy(model(inputs), labels), tau=0.0, optimizer=optimizer,
                 generator=generator)


def config_record(config: RunConfig) -> dict[str, Any]:
    record = asdict(config)
    record["method"] = config.method.name
    record["strides"] = None if config.strides is None else list(config.strides)
    return record


from plastic.synthetic.pool import run_many  # noqa: E402 (re-exported; the pool imports run_seed from here)

__all__ = ["SCENARIOS", "SWITCHES", "Method", "RunConfig", "config_record", "parse_methods", "run_many", "run_seed"]
