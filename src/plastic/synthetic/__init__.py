"""The synthetic input/label adaptation experiments of the paper (§3, App. A.2).

A small CNN (3 convs, 3 FC layers) is trained with SGD + momentum for 100 phases of 500 updates each:

- *input adaptation*: the training set is split into 100 chunks, one added per phase to a growing buffer;
- *label adaptation*: every phase the classes are re-assigned consistently (all images of a class move to one new
  class), by a random permutation (paper) or a cyclic shift (public code).

Methods (LN, SAM, CReLU, Reset, ReDo and their combinations) come from `plastic.plasticity`; the probes (λmax,
active units) from `plastic.probes`. `plastic synthetic` is the command line (`plastic.synthetic.commands`).
"""

from plastic.synthetic.data import (
    ImageDataset,
    chunk_indices,
    label_permutations,
    load_cifar10,
    load_digits,
    write_cifar10_folder,
)
from plastic.synthetic.experiment import Method, RunConfig, parse_methods, run_seed
from plastic.synthetic.model import SyntheticNet, build_model

__all__ = [
    "ImageDataset",
    "Method",
    "RunConfig",
    "SyntheticNet",
    "build_model",
    "chunk_indices",
    "label_permutations",
    "load_cifar10",
    "load_digits",
    "parse_methods",
    "run_seed",
    "write_cifar10_folder",
]
