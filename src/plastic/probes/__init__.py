"""Plasticity probes: measurements on any `torch.nn.Module` (paper §4.1 "Metrics", §4.3, Fig. 4).

- `hessian`: λmax of the loss Hessian, the paper's sharpness of the loss landscape, and its trace (Hutchinson).
- `activity`: fraction of active units (the paper's gradient-propagation metric), ReDo's dormant units and GraMa's
  gradient-based dormant units.
- `churn`: output change on a fixed reference batch caused by an update.
- `rank`: effective, stable and feature (srank) ranks of a feature matrix.
- `norms`: weight norm, gradient norm, distance to reference (e.g. initial) parameters, effective learning rate.

Per-layer probes return dicts keyed by layer name (module names) plus `"all"`, ready to be logged as
`probes/<name>/<layer>`.
"""

from plastic.probes.activity import (
    ACTIVATION_TYPES,
    activation_modules,
    active_unit_fraction,
    dormant_unit_fraction,
    gradient_dormant_fraction,
)
from plastic.probes.churn import OutputChurn
from plastic.probes.hessian import hessian_max_eigenvalue, hessian_trace, hessian_vector_product
from plastic.probes.norms import (
    effective_learning_rate,
    gradient_norm,
    parameter_distance,
    parameter_snapshot,
    weight_norm,
)
from plastic.probes.rank import effective_rank, feature_rank, layer_features, stable_rank

__all__ = [
    "ACTIVATION_TYPES",
    "OutputChurn",
    "activation_modules",
    "active_unit_fraction",
    "dormant_unit_fraction",
    "effective_learning_rate",
    "effective_rank",
    "feature_rank",
    "gradient_dormant_fraction",
    "gradient_norm",
    "hessian_max_eigenvalue",
    "hessian_trace",
    "hessian_vector_product",
    "layer_features",
    "parameter_distance",
    "parameter_snapshot",
    "stable_rank",
    "weight_norm",
]
