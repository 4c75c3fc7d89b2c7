"""zoomkern::cells_to_offsets: attention cells -> top-left corners of full-resolution patches."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import reference
from . import _checks


@torch.library.custom_op("zoomkern::cells_to_offsets", mutates_args=())
def _cells_to_offsets(
    indices: Tensor, grid_size: list[int], image_size: list[int], patch_size: list[int]
) -> Tensor:
    n = grid_size[0] * grid_size[1]
    if indices.numel():  # no host sync on CUDA (a device-side assert there); ValueError on CPU
        _checks.data_check(
            ((indices >= 0) & (indices < n)).all(),
            f"indices must lie in [0, {n}) for grid_size {tuple(grid_size)}",
        )
    return reference.cells_to_offsets_ref(indices, grid_size, image_size, patch_size)


@_cells_to_offsets.register_fake
def _(indices, grid_size, image_size, patch_size):
    return indices.new_empty((*indices.shape, 2), dtype=torch.int64)


def cells_to_offsets(indices, grid_size, image_size, patch_size):
    """(B, k) int64 flat cell indices of a ``grid_size`` (gh, gw) grid -> (B, k, 2) int64 ``(y, x)``
    top-left corners of ``patch_size`` patches centred on the cells' centres in ``image_size``."""
    _checks.tensor("indices", indices, dtypes=(torch.int64,))
    gh, gw = _checks.positive_pair("grid_size", grid_size)
    H, W = _checks.positive_pair("image_size", image_size)
    ph, pw = _checks.positive_pair("patch_size", patch_size)
    return _cells_to_offsets(indices, [gh, gw], [H, W], [ph, pw])
