"""The public ops: each a ``torch.library.custom_op`` in namespace ``zoomkern``."""

from .expectation import expectation
from .gather import gather_patches
from .offsets import cells_to_offsets
from .sample import Samples, sample_patches
from .softmax import spatial_softmax

__all__ = [
    "spatial_softmax",
    "sample_patches",
    "Samples",
    "expectation",
    "cells_to_offsets",
    "gather_patches",
]
