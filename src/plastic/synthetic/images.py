"""How a synthetic dataset's images are laid out for one model: patch rows for the patch path, or NHWC images."""

from __future__ import annotations

import numpy as np
import torch


class _Images:
    """A dataset's images for one model: where the model has a patch path (`SyntheticNet.patch_rows`), its patch
    rows, one row of rows per image (`batch`, `range`: what `forward` takes), and whole images gathered from the
    dataset's own array when needed (`whole`: probes, ReDo); otherwise one contiguous NHWC copy for everything.
    Whole rows are gathered with index_select, much faster than fancy indexing a channels_last NCHW tensor
    (docs/performance.md)."""

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
