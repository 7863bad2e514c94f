"""plastic-rl: sample-efficient off-policy reinforcement learning that keeps its plasticity.

Implements "PLASTIC: Improving Input and Label Plasticity for Sample Efficient Reinforcement Learning"
(Lee et al., NeurIPS 2023). The toolkit (`plastic.plasticity`, `plastic.probes`) works on any `torch.nn.Module`;
the agents, the synthetic experiments and the reporting are built on it.
"""

import os as _os

__version__ = "0.2.0"

# Ask torch's CPU allocator for transparent huge pages on allocations of 2 MB and more (read once, when torch first
# allocates, so it must be set before that; a setting the user made wins). The Rainbow update's multi-MB weights,
# gradients and Adam moments then take far fewer TLB misses: 54-57 -> 41-44 ms per compiled PLASTIC† update on the
# 2-core CPU (see plastic.runtime). No effect where the kernel has no THP or torch was imported and used before.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
