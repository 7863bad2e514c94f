"""The phases loop of the synthetic experiments (paper §3, App. A.2), one seed at a time, seeds in worker processes.

One run = one (scenario, method, hyper-parameters, seed): `phases` phases of `updates_per_phase` SGD(+momentum)
updates on batches of 128 drawn uniformly (with replacement) from

- input adaptation: the buffer of the first `phase + 1` chunks of the shuffled training set;
- label adaptation: the whole training set with labels `label_map[phase][y]`.

After every phase the test accuracy is measured (test labels mapped the same way); every `probe_every` phases the
probes λmax (`plastic.probes.hessian_max_eigenvalue`) and active units (`active_unit_fraction`) on `probe_samples`
examples of the current training data. Probes draw from their own generator, so they never change the run.

Methods are switches of the toolkit (`plastic.plasticity`): LN and CReLU are in the model (`model.py`), SAM wraps the
SGD optimizer, Reset re-draws the head (the three FC layers) at the start of every `reset_interval`-th phase (the
paper's interval "in chunks"; `reset_optimizer` also clears the head's momentum), ReDo re-initialises dormant units
on the same schedule.

Seeds: measured on the 2-core CPU (benchmarks/synthetic_speed.py), one seed per 1-thread process beats stacking seeds
with `torch.func.vmap` (the convs become grouped convs); so `run_many` trains one seed after another in each of
`workers` processes. A seed's result does not depend on the worker that ran it (tested).
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue as queue_module
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch.nn import functional as F

from plastic.runtime import tune_allocator
from plastic.synthetic.data import LABEL_MAP_MODES, ImageDataset, chunk_indices, label_permutations
from plastic.synthetic.model import build_model

SCENARIOS = ("input", "label")
SWITCHES = ("ln", "sam", "crelu", "reset", "redo")
PLASTIC = ("ln", "sam", "crelu", "reset")


@dataclass(frozen=True)
class Method:
    """A method = a set of switches; its name joins them with `+` in `SWITCHES` order (`"base"` for none)."""

    switches: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.switches) - set(SWITCHES)
        if unknown:
            raise ValueError(f"unknown method switch(es) {sorted(unknown)}; allowed: base, plastic, {', '.join(SWITCHES)}")

    @classmethod
    def parse(cls, text: str) -> Method:
        """`"base"`, `"plastic"` (= ln+sam+crelu+reset) or switches joined with `+` (`"ln+sam"`)."""
        switches: set[str] = set()
        for part in text.strip().lower().split("+"):
            part = part.strip()
            if part == "base":
                continue
            if part == "plastic":
                switches.update(PLASTIC)
            elif part in SWITCHES:
                switches.add(part)
            else:
                raise ValueError(f"unknown method {part!r} in {text!r}; allowed: base, plastic, {', '.join(SWITCHES)} joined with +")
        return cls(frozenset(switches))

    @property
    def name(self) -> str:
        if self.switches == frozenset(PLASTIC):
            return "plastic"
        return "+".join(s for s in SWITCHES if s in self.switches) or "base"

    def __contains__(self, switch: str) -> bool:
        return switch in self.switches


def parse_methods(text: str) -> list[Method]:
    """A comma list of methods (`"base,crelu,ln+sam,plastic"`); `"combinations"` = all 16 on/off combinations of
    LN, SAM, CReLU, Reset. Duplicates are dropped, order kept."""
    methods: list[Method] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if item == "combinations":
            found = [Method(frozenset(c)) for k in range(5) for c in itertools.combinations(PLASTIC, k)]
        else:
            found = [Method.parse(item)]
        methods.extend(m for m in found if m not in methods)
    if not methods:
        raise ValueError(f"no method in {text!r}")
    return methods


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

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario={self.scenario!r}; allowed: {', '.join(SCENARIOS)}")
        if self.label_map not in LABEL_MAP_MODES:
            raise ValueError(f"label_map={self.label_map!r}; allowed: {', '.join(LABEL_MAP_MODES)}")
        for name in ("phases", "updates_per_phase", "batch_size", "reset_interval", "probe_samples", "hessian_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
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
        if "reset" in self.method or "redo" in self.method:
            chosen["reset_interval"] = self.reset_interval
        return chosen


def _make_optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    kwargs = dict(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if "sam" in config.method:
        from plastic.plasticity import SAM

        return SAM(model.parameters(), torch.optim.SGD, rho=config.rho, **kwargs)
    return torch.optim.SGD(model.parameters(), foreach=True, **kwargs)


def _train_step(forward, optimizer, x, y, sam: bool) -> float:
    """One SGD (or SAM) update of the model behind `forward` (the model, or its `forward_patches`) on (x, y)."""
    loss = F.cross_entropy(forward(x), y)
    if sam:  # Algorithm 1: gradient at w, ascend to w + eps, gradient there, update w
        loss.backward()
        optimizer.first_step(zero_grad=True)
        F.cross_entropy(forward(x), y).backward()
        optimizer.second_step(zero_grad=True)
    else:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


# Evaluation batch: small enough for the activations to stay in cache (10,000 CIFAR test images through the patch
# path: 111 ms in batches of 2500, 94 ms in batches of 256).
EVAL_BATCH = 256


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = EVAL_BATCH) -> float:
    """Fraction of `images` (N, C, H, W) that `model` classifies as `labels`."""
    return _accuracy(model, lambda start, stop: images[start:stop], labels, batch)


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


class _Images:
    """A dataset's images for one model: where the model has a patch path (`SyntheticNet.patch_rows`), its patch
    rows, one row of rows per image (`batch`, `range`: what `forward` takes), and whole images gathered from the
    dataset's own array when needed (`whole`: probes, ReDo); otherwise one contiguous NHWC copy for everything.
    Gathering whole rows with index_select is ~5x faster than fancy indexing a channels_last NCHW tensor (44 vs 228
    us for a CIFAR batch of 128 on one core)."""

    def __init__(self, array: np.ndarray, model):
        self.array = array
        self.rows: torch.Tensor | None = None
        self.forward = model
        nhwc = torch.from_numpy(array).permute(0, 2, 3, 1)
        if model.patch_rows is None:
            self.nhwc = nhwc.contiguous()
        else:
            rows = model.to_patches(nhwc)
            self.width = rows.shape[1]
            self.rows = rows.view(len(array), -1)
            self.forward = model.forward_patches

    def whole(self, index: torch.Tensor) -> torch.Tensor:
        """Images `index` as NCHW in channels_last memory, for the ordinary forward."""
        if self.rows is None:
            return self.nhwc.index_select(0, index).permute(0, 3, 1, 2)
        return torch.from_numpy(self.array[index.numpy()]).contiguous(memory_format=torch.channels_last)

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """Images `index` as `self.forward` takes them."""
        if self.rows is None:
            return self.whole(index)
        return self.rows.index_select(0, index).view(-1, self.width)

    def range(self, start: int, stop: int) -> torch.Tensor:
        """Images `start:stop` as `self.forward` takes them (no copy)."""
        if self.rows is None:
            return self.nhwc[start:stop].permute(0, 3, 1, 2)
        return self.rows[start:stop].reshape(-1, self.width)


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
            dataset.image_shape, dataset.num_classes, config.strides, layer_norm="ln" in method, crelu="crelu" in method
        )
    optimizer = _make_optimizer(model, config)
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

    rows: list[dict[str, Any]] = []
    for phase in range(config.phases):
        if config.scenario == "input":
            buffer = torch.cat(chunks[: phase + 1])
            labels, test_labels = train_y, test_y
        else:
            buffer = torch.arange(len(train_y))
            labels, test_labels = label_maps[phase][train_y], label_maps[phase][test_y]

        if phase > 0 and phase % config.reset_interval == 0:
            _intervene(model, optimizer, config, train_x.whole(buffer[: config.probe_samples]), generator)

        losses = []
        for _ in range(config.updates_per_phase):
            index = buffer[torch.randint(len(buffer), (config.batch_size,), generator=generator)]
            losses.append(_train_step(train_x.forward, optimizer, train_x.batch(index), labels[index], "sam" in method))

        row: dict[str, Any] = {
            "scenario": config.scenario,
            "method": method.name,
            "seed": seed,
            "phase": phase,
            "test_accuracy": _accuracy(test_x.forward, test_x.range, test_labels),
            "train_loss": float(np.mean(losses[-max(1, len(losses) // 10) :])),
        }
        last = phase == config.phases - 1
        if config.probe_every and ((phase + 1) % config.probe_every == 0 or last):
            pick = buffer[torch.randint(len(buffer), (config.probe_samples,), generator=probe_generator)]
            row.update(_probe(model, train_x.whole(pick), labels[pick], probe_generator, config.hessian_iters))
        rows.append(row)
        if on_phase is not None:
            on_phase(1)
    return rows


def _intervene(model, optimizer, config: RunConfig, inputs: torch.Tensor, generator: torch.Generator) -> None:
    """Reset the head / ReDo the dormant units at the start of a phase on the reset schedule."""
    if "reset" in config.method:
        from plastic.plasticity import reset_optimizer_state_, reset_parameters_

        reset_parameters_(model.head, generator=generator)
        if config.reset_optimizer:
            reset_optimizer_state_(optimizer, model.head.parameters())
    if "redo" in config.method:
        from plastic.plasticity import redo_

        redo_(model, inputs, tau=config.redo_tau, optimizer=optimizer, generator=generator)


# ------------------------------------------------------------------------------------------------ many runs

_worker_dataset: ImageDataset | None = None
_worker_progress: Any = None


def _init_worker(dataset: ImageDataset, progress: Any) -> None:
    global _worker_dataset, _worker_progress
    torch.set_num_threads(1)
    tune_allocator()
    _worker_dataset, _worker_progress = dataset, progress


def _run_in_worker(config: RunConfig, seed: int) -> list[dict[str, Any]]:
    return run_seed(_worker_dataset, config, seed, on_phase=_worker_progress.put)


def run_many(
    dataset: ImageDataset,
    runs: Iterable[tuple[RunConfig, int]],
    workers: int = 1,
    on_phase: Callable[[int], None] | None = None,
    on_run: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train every `(config, seed)`; `workers` > 1 spreads them over that many 1-thread processes.

    `on_phase(n)` is called as phases finish (a progress bar), `on_run(rows)` as runs finish (checkpointing results).
    Rows come back in the order of `runs`.
    """
    runs = list(runs)
    results: list[list[dict[str, Any]] | None] = [None] * len(runs)
    if workers <= 1 or len(runs) <= 1:
        tune_allocator()
        for position, (config, seed) in enumerate(runs):
            results[position] = run_seed(dataset, config, seed, on_phase)
            if on_run is not None:
                on_run(results[position])
        return [row for rows in results for row in rows]  # type: ignore[union-attr]

    context = multiprocessing.get_context("spawn")
    progress = context.Queue()
    with ProcessPoolExecutor(
        min(workers, len(runs)), mp_context=context, initializer=_init_worker, initargs=(dataset, progress)
    ) as pool:
        pending = {pool.submit(_run_in_worker, config, seed): i for i, (config, seed) in enumerate(runs)}
        while pending:
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(progress, on_phase)
            for future in done:
                position = pending.pop(future)
                results[position] = future.result()
                if on_run is not None:
                    on_run(results[position])
        _drain(progress, on_phase)
    return [row for rows in results for row in rows]  # type: ignore[union-attr]


def _drain(progress: Any, on_phase: Callable[[int], None] | None) -> None:
    while True:
        try:
            count = progress.get_nowait()
        except queue_module.Empty:
            return
        if on_phase is not None:
            on_phase(count)


def run_seeds(
    dataset: ImageDataset, config: RunConfig, seeds: Iterable[int], workers: int = 1
) -> list[dict[str, Any]]:
    """All phases of `config` for each seed (see `run_many`)."""
    return run_many(dataset, [(config, seed) for seed in seeds], workers=workers)


def with_method(config: RunConfig, method: Method, **overrides: Any) -> RunConfig:
    return replace(config, method=method, **overrides)


def config_record(config: RunConfig) -> dict[str, Any]:
    record = asdict(config)
    record["method"] = config.method.name
    record["strides"] = None if config.strides is None else list(config.strides)
    return record


__all__ = [
    "SCENARIOS",
    "SWITCHES",
    "Method",
    "RunConfig",
    "accuracy",
    "config_record",
    "parse_methods",
    "run_many",
    "run_seed",
    "run_seeds",
    "with_method",
]
