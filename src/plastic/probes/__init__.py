"""Plasticity probes: measurements on any `torch.nn.Module` (paper §4.1 "Metrics", §4.3, Fig. 4).

- `hessian`: λmax of the loss Hessian, the paper's sharpness of the loss landscape.
- `activity`: fraction of active units (the paper's gradient-propagation metric) and ReDo's dormant units.
- `rank`: effective, stable and feature (srank) ranks of a feature matrix.
- `norms`: weight norm, gradient norm, distance to reference (e.g. initial) parameters.
"""

from plastic.probes.activity import ACTIVATION_TYPES, activation_modules, active_unit_fraction, dormant_unit_fraction
from plastic.probes.hessian import hessian_max_eigenvalue, hessian_vector_product
from plastic.probes.norms import gradient_norm, parameter_distance, weight_norm
from plastic.probes.rank import effective_rank, feature_rank, layer_features, stable_rank

__all__ = [
    "ACTIVATION_TYPES",
    "activation_modules",
    "active_unit_fraction",
    "dormant_unit_fraction",
    "effective_rank",
    "feature_rank",
    "gradient_norm",
    "hessian_max_eigenvalue",
    "hessian_vector_product",
    "layer_features",
    "parameter_distance",
    "stable_rank",
    "weight_norm",
]
