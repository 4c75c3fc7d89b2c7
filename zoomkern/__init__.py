"""zoomkern: kernels and models for classifying very large images that hold tiny objects.

import zoomkern as zk
probs, ent = zk.spatial_softmax(logits, return_entropy=True)
s = zk.sample_patches(probs, k=10)
offsets = zk.cells_to_offsets(s.indices, grid_size, image_size, patch_size)
patches = zk.gather_patches(image, offsets, patch_size)
value = zk.expectation(feature_net(patches), s.probs)
"""

import sys as _sys

from . import _alloc

# Before anything imports torch: `zoomkern train` tunes glibc's allocator, which torch reads once (_alloc).
_alloc.tune_for_command(_sys.argv)

from . import backends as _backends  # noqa: E402
from . import reference  # noqa: E402
from ._version import __version__  # noqa: E402
from .backends import BackendError  # noqa: E402
from .ops import (  # noqa: E402
    Samples,
    cells_to_offsets,
    expectation,
    gather_patches,
    sample_patches,
    spatial_softmax,
)

# Load zoomkern._C now, so that a built extension that fails to load warns at import (backends.load_extension)
# rather than at the first op, or never.
_backends._ext()

__all__ = [
    "spatial_softmax",
    "sample_patches",
    "Samples",
    "expectation",
    "cells_to_offsets",
    "gather_patches",
    "reference",
    "BackendError",
    "__version__",
]


def __getattr__(name):
    # Models and data import lazily: the kernel library stays light to import.
    if name in ("models", "data", "training", "io", "cli"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'zoomkern' has no attribute {name!r}")
