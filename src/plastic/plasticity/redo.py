"""ReDo, "Recycling Dormant neurons" (Sokar et al., 2023, "The dormant neuron phenomenon in deep RL").

Context in the paper: §2 and §4 relate plasticity loss to inactive units (the "fraction of active units" metric);
ReDo is the targeted alternative to a full reset. For a layer l with units i = 1..n and activations h_i over a batch
(and, for conv maps, over spatial positions):

    s_i = E|h_i| / ((1/n) sum_k E|h_k|)          unit i is tau-dormant if s_i <= tau

A dormant unit is recycled: its incoming weights and bias are re-initialised (a fresh init draw, as in
`reset_parameters_`), its outgoing weights are set to zero (so the network's output does not change), and the
optimizer moments of exactly those rows/columns are zeroed. Step counts are per tensor and are left alone.

Structure is discovered from module registration order (`model.named_modules()`, leaves only), which is assumed to
be the execution order:

    producer (nn.Linear | nn.Conv2d | NoisyLinear) -> [nn.LayerNorm | ConvLayerNorm] -> activation (nn.ReLU | CReLU)
        -> parameter-free modules (Flatten, pooling, Dropout, ...) -> consumer (nn.Linear | nn.Conv2d | NoisyLinear)

- A LayerNorm/ConvLayerNorm between producer and activation has its affine for the unit reset to 1/0.
- conv -> flatten -> linear: channel c feeds the consumer's input columns [c*HW, (c+1)*HW) (NCHW flatten order).
- CReLU (features on dim 1): producer unit j feeds activation outputs j and j+n; the unit is dormant when both are
  dormant, and the outgoing columns of both are zeroed. Scores are normalised over all 2n outputs.
- A NoisyLinear consumer has both its mu and sigma columns zeroed, so the recycled unit contributes exactly 0.
- Besides the consumer found by registration order, any other producer whose input shares storage with the
  activation's output (e.g. the value and advantage streams of a dueling head reading one flattened feature) is
  also treated as a consumer. A consumer reached only through a copy (e.g. `.contiguous()`) is not detected.
Anything else between producer and consumer with parameters, an activation with no producer before it or no consumer
after it, or sizes that do not match, raises ValueError. Scores are measured in the model's current mode
(train/eval); noisy layers use whatever noise they hold.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from plastic.nets.noisy import NoisyLinear
from plastic.plasticity.layers import ConvLayerNorm, CReLU
from plastic.plasticity.reset import reset_parameters_
from plastic.plasticity.sam import SAM

PRODUCERS = (nn.Linear, nn.Conv2d, NoisyLinear)
NORMS = (nn.LayerNorm, ConvLayerNorm)
ACTIVATIONS = (nn.ReLU, CReLU)


@dataclass
class _Layer:
    name: str  # the producer's name: the layer whose units are scored and recycled
    producer: nn.Module
    norm: nn.Module | None
    activation_name: str
    activation: nn.Module
    consumers: list[tuple[str, nn.Module]] = field(default_factory=list)

    @property
    def units(self) -> int:
        return self.producer.out_channels if isinstance(self.producer, nn.Conv2d) else self.producer.out_features

    @property
    def width(self) -> int:
        """Number of activation outputs (features or channels): 2n after CReLU."""
        return 2 * self.units if isinstance(self.activation, CReLU) else self.units


def _find_layers(model: nn.Module) -> list[_Layer]:
    layers: list[_Layer] = []
    producer: tuple[str, nn.Module] | None = None
    norm: nn.Module | None = None
    pending: _Layer | None = None  # an activation waiting for its consumer
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue
        if isinstance(module, PRODUCERS):
            if pending is not None:
                pending.consumers.append((name, module))
                layers.append(pending)
                pending = None
            producer, norm = (name, module), None
        elif isinstance(module, NORMS):
            if pending is not None:
                raise ValueError(f"ReDo: norm {name!r} sits between activation {pending.activation_name!r} and its "
                                 "consuming layer; only parameter-free modules may")
            if producer is not None:
                norm = module
        elif isinstance(module, ACTIVATIONS):
            if pending is not None:
                raise ValueError(f"ReDo: activation {name!r} follows activation {pending.activation_name!r} "
                                 "with no layer in between")
            if producer is None:
                raise ValueError(f"ReDo: activation {name!r} has no Linear/Conv2d/NoisyLinear before it")
            pending = _Layer(producer[0], producer[1], norm, name, module)
            producer, norm = None, None
        elif any(True for _ in module.parameters(recurse=False)):
            if pending is not None:
                raise ValueError(f"ReDo: module {name!r} ({type(module).__name__}) with parameters sits between "
                                 f"activation {pending.activation_name!r} and its consuming layer")
            producer, norm = None, None  # the chain is broken; an activation right after would have no producer
    if pending is not None:
        raise ValueError(f"ReDo: activation {pending.activation_name!r} has no consuming layer after it")
    for layer in layers:
        _check_sizes(layer)
    return layers


def _check_sizes(layer: _Layer) -> None:
    if layer.norm is not None:
        size = layer.norm.num_channels if isinstance(layer.norm, ConvLayerNorm) else layer.norm.normalized_shape
        if tuple(size if isinstance(size, tuple) else (size,)) != (layer.units,):
            raise ValueError(f"ReDo: the norm after {layer.name!r} does not normalise its {layer.units} units alone")
    for name, consumer in layer.consumers:
        if isinstance(consumer, nn.Conv2d):
            if consumer.groups != 1 or consumer.in_channels != layer.width:
                raise ValueError(f"ReDo: conv {name!r} (in_channels={consumer.in_channels}, groups={consumer.groups})"
                                 f" cannot consume the {layer.width} channels of {layer.activation_name!r}")
        elif consumer.in_features % layer.width:
            raise ValueError(f"ReDo: layer {name!r} has in_features={consumer.in_features}, not a multiple of the "
                             f"{layer.width} outputs of {layer.activation_name!r}")


def _as_args(inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple:
    return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)


def _trace(model: nn.Module, layers: list[_Layer], run: Callable[[], Any]) -> tuple[dict[str, tuple], Any]:
    """Call `run()` (a forward of `model`) with hooks on every layer's activation; also adds storage-sharing consumers.

    Returns `({layer name: (activation input, activation output)}, run())`. The tensors keep their graph if `run`
    builds one (ReGraMa differentiates the loss against them).
    """
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    output_storage: dict[str, int] = {}
    input_storage: dict[int, set[int]] = {}
    alive: list[torch.Tensor] = []  # held until the end so that no storage address is reused within the pass
    handles = []

    def on_activation(layer):
        def hook(module, args, output):
            if output.dim() < 2 or output.shape[1] != layer.width:
                raise ValueError(f"ReDo: activation {layer.activation_name!r} output has shape "
                                 f"{tuple(output.shape)}; expected {layer.width} features on dim 1")
            captured[layer.name] = (args[0], output)
            output_storage[layer.name] = output.untyped_storage().data_ptr()
            alive.append(output)

        return hook

    def on_producer_input(module, args):
        if args and isinstance(args[0], torch.Tensor):
            input_storage.setdefault(id(module), set()).add(args[0].untyped_storage().data_ptr())
            alive.append(args[0])

    try:
        for layer in layers:
            handles.append(layer.activation.register_forward_hook(on_activation(layer)))
        producers = [(n, m) for n, m in model.named_modules() if isinstance(m, PRODUCERS)]
        for _, module in producers:
            handles.append(module.register_forward_pre_hook(on_producer_input))
        result = run()
    finally:
        for handle in handles:
            handle.remove()
    for layer in layers:
        if layer.name not in captured:
            raise ValueError(f"ReDo: activation {layer.activation_name!r} was not called by the forward pass")
        known = {id(m) for _, m in layer.consumers}
        for name, module in producers:
            if id(module) not in known and output_storage[layer.name] in input_storage.get(id(module), ()):
                layer.consumers.append((name, module))
        _check_sizes(layer)
    return captured, result


def _unit_mean_abs(tensor: torch.Tensor) -> torch.Tensor:
    """E|x_i| per feature i on dim 1, over the batch and any spatial positions."""
    return tensor.abs().float().mean(dim=[d for d in range(tensor.dim()) if d != 1])


@torch.no_grad()
def _measure(model: nn.Module, inputs, layers: list[_Layer]) -> dict[str, torch.Tensor]:
    """E|h| per activation output (over batch and spatial positions), h the activation's output as it is."""
    captured, _ = _trace(model, layers, lambda: model(*_as_args(inputs)))
    return {name: _unit_mean_abs(output) for name, (_, output) in captured.items()}


def _normalise(mean_abs: torch.Tensor) -> torch.Tensor:
    from plastic.probes.activity import normalized_scores

    return normalized_scores(mean_abs)


def unit_scores(model: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """s_i = E|h_i| / mean_k E|h_k| for every ReDo layer, keyed by the producing layer's name.

    One value per activation output (2n values after CReLU: outputs j and j+n belong to unit j). `inputs` is passed
    to `model` (a tuple is unpacked). Hooks are removed afterwards.
    """
    layers = _find_layers(model)
    return {name: _normalise(value) for name, value in _measure(model, inputs, layers).items()}


def _optimizer_states(optimizer: torch.optim.Optimizer | None, parameter: torch.Tensor) -> list[torch.Tensor]:
    """The optimizer's per-element state tensors of `parameter` (moments, momentum buffers)."""
    if optimizer is None:
        return []
    inner = optimizer.base_optimizer if isinstance(optimizer, SAM) else optimizer
    state = inner.state.get(parameter, {})
    return [v for v in state.values() if isinstance(v, torch.Tensor) and v.shape == parameter.shape]


@torch.no_grad()
def _reinitialise_rows(module: nn.Module, rows: torch.Tensor, optimizer, generator) -> None:
    fresh = reset_parameters_(copy.deepcopy(module), generator)
    for p, q in zip(module.parameters(), fresh.parameters()):
        p.index_copy_(0, rows, q.index_select(0, rows))
        for buffer in _optimizer_states(optimizer, p):
            buffer.index_fill_(0, rows, 0)


@torch.no_grad()
def _recycle(layer: _Layer, units: torch.Tensor, optimizer, generator) -> None:
    _reinitialise_rows(layer.producer, units, optimizer, generator)
    if layer.norm is not None:
        _reinitialise_rows(layer.norm, units, optimizer, generator)
    outputs = torch.cat([units, units + layer.units]) if isinstance(layer.activation, CReLU) else units
    for _, consumer in layer.consumers:
        if isinstance(consumer, nn.Conv2d):
            columns, weights = outputs, [consumer.weight]
        else:
            positions = consumer.in_features // layer.width  # HW after a flatten, 1 for vector features
            offsets = torch.arange(positions, device=outputs.device)
            columns = (outputs[:, None] * positions + offsets).flatten()
            weights = [consumer.weight_mu, consumer.weight_sigma] if isinstance(consumer, NoisyLinear) else [
                consumer.weight]
        for weight in weights:
            index = columns.to(weight.device)
            weight.index_fill_(1, index, 0)
            for buffer in _optimizer_states(optimizer, weight):
                buffer.index_fill_(1, index, 0)


def redo_(
    model: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    tau: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, int]:
    """Recycle the tau-dormant units of every layer of `model`; returns the number recycled per layer (by name).

    All scores are measured on `inputs` before any unit is recycled. `optimizer` (SAM allowed) gets the moments of
    the touched rows/columns zeroed; `generator` seeds the fresh draws as in `reset_parameters_`.
    """
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got tau={tau}")
    layers = _find_layers(model)
    mean_abs = _measure(model, inputs, layers)
    return _recycle_dormant(layers, {name: _normalise(value) for name, value in mean_abs.items()}, tau, optimizer,
                            generator)


def _recycle_dormant(
    layers: list[_Layer],
    scores: dict[str, torch.Tensor],
    tau: float,
    optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator | None,
) -> dict[str, int]:
    """Recycle every unit whose normalised score is <= tau; returns the number recycled per layer.

    The recycling step shared by ReDo (activation scores) and ReGraMa (gradient scores). `scores[name]` holds one
    value per unit (n) or, after CReLU, per activation output (2n: unit j is dormant when outputs j and j+n both are).
    """
    recycled: dict[str, int] = {}
    for layer in layers:
        score = scores[layer.name]
        if score.numel() not in (layer.units, layer.width):
            raise ValueError(f"ReDo: {score.numel()} scores for layer {layer.name!r} with {layer.units} units")
        dormant = score <= tau
        if dormant.numel() != layer.units:  # CReLU outputs: both halves must be dormant
            dormant = dormant[: layer.units] & dormant[layer.units:]
        units = dormant.nonzero().flatten()
        recycled[layer.name] = int(units.numel())
        if units.numel():
            _recycle(layer, units.to(next(layer.producer.parameters()).device), optimizer, generator)
    return recycled
