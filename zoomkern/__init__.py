"""zoomkern: kernels and models for classifying very large images that hold tiny objects.

import zoomkern as zk
probs, ent = zk.spatial_softmax(logits, return_entropy=True)
s = zk.sample_patches(probs, k=10)
offsets = zk.cells_to_offsets(s.indices, grid_size, image_size, patch_size)
patches = zk.gather_patches(image, offsets, patch_size)
value = zk.expectation(feature_net(patches), s.probs)
"""

from . import reference
from .backends import BackendError
from .ops import Samples, cells_to_offsets, expectation, gather_patches, sample_patches, spatial_softmax

__version__ = "0.1.0"

__all__ = [
    "spatial_softmax",
    "sample_patches",
    "Samples",
    "expectation",
    "cells_to_offsets",
    "gather_patches",
    "reference",
    "BackendError",
]


def __getattr__(name):
    # Models and data import lazily: the kernel library stays light to import.
    if name in ("models", "data", "training", "io"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'zoomkern' has no attribute {name!r}")
