"""plastic-rl: sample-efficient off-policy reinforcement learning that keeps its plasticity.

Implements "PLASTIC: Improving Input and Label Plasticity for Sample Efficient Reinforcement Learning"
(Lee et al., NeurIPS 2023). The toolkit (`plastic.plasticity`, `plastic.probes`) works on any `torch.nn.Module`;
the agents, the synthetic experiments and the reporting are built on it.
"""

__version__ = "0.2.0"
