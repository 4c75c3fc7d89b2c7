"""Image sources: where pixels come from, read patch by patch.

src = zk.io.open("slide.tif")            # tiled pyramidal TIFF/BigTIFF (tifffile + zarr)
src = zk.io.open("slide.svs")            # OpenSlide formats (backend="openslide")
src = zk.io.open("image.npy")            # a memmap; .bmp/.png/.jpg are decoded once (Pillow)
src = zk.io.from_array(tensor, layout="CHW")
src.shape, src.levels, src.dtype         # (C, H, W), ((H0, W0), (H1, W1), ...), torch dtype
src.read_patches(offsets, (ph, pw), level=0)   # (k, C, ph, pw), zero outside the image
src.lowres((h, w))                       # (C, h, w) from the nearest level at or above (h, w)
zk.gather_patches([src, ...], offsets, size, ...)   # a batch of sources, like a (B, C, H, W) tensor
"""

from __future__ import annotations

import os

from .array import ArraySource, NpySource
from .cache import TileCache
from .source import Source, scaled_size

__all__ = [
    "open",
    "from_array",
    "Source",
    "ArraySource",
    "NpySource",
    "TileCache",
    "scaled_size",
    "BACKENDS",
    "EXTENSIONS",
]

OPENSLIDE_EXT = (".svs", ".ndpi", ".mrxs", ".vms", ".vmu", ".scn", ".svslide", ".bif")
TIFF_EXT = (".tif", ".tiff", ".btf", ".tf8", ".tf2", ".ome.tif", ".ome.tiff")
PLAIN_EXT = (".bmp", ".png", ".jpg", ".jpeg")
EXTENSIONS = OPENSLIDE_EXT + TIFF_EXT + PLAIN_EXT + (".npy",)
BACKENDS = ("tifffile", "openslide", "numpy", "pillow")


def _default_backend(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext in OPENSLIDE_EXT:
        return "openslide"
    if ext in TIFF_EXT:
        return "tifffile"
    if ext in PLAIN_EXT:
        return "pillow"
    if ext == ".npy":
        return "numpy"
    raise ValueError(
        f"{path}: unsupported format {ext or '(no extension)'!r}; supported: {', '.join(EXTENSIONS)} "
        "(or pass backend=...)"
    )


def open(path, *, backend: str | None = None, **kwargs) -> Source:
    """Open an image file as a Source. ``backend``: 'tifffile' (default for TIFF), 'openslide' (default
    for .svs/.ndpi/.mrxs/...), 'numpy' (.npy memmap; ``index=``, ``layout=``) or 'pillow' (decoded once).
    Extra keywords go to the backend (``cache_bytes=`` for tifffile)."""
    path = os.fspath(path)
    if backend is None:
        backend = _default_backend(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: no such file" if not os.path.isdir(path) else f"{path}: a directory"
        )
    if backend == "tifffile":
        from .tiff import TiffSource

        return TiffSource(path, **kwargs)
    if backend == "openslide":
        from .openslide_ import OpenSlideSource

        return OpenSlideSource(path, **kwargs)
    if backend == "numpy":
        return NpySource(path, **kwargs)
    if backend == "pillow":
        from .plain import PlainSource

        return PlainSource(path, **kwargs)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def from_array(array, layout: str = "CHW") -> Source:
    """Wrap a (C, H, W) (or (H, W, C) with layout="HWC", or (H, W)) tensor or numpy array, by reference."""
    return ArraySource(array, layout)


def sources(image) -> list[Source] | None:
    """``image`` as a list of sources when it is a Source or a list/tuple of them, else None (a tensor)."""
    if isinstance(image, Source):
        return [image]
    if isinstance(image, (list, tuple)) and image and all(isinstance(s, Source) for s in image):
        return list(image)
    return None
