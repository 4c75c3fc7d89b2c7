"""Sources over arrays held in memory or memory-mapped: tensors, numpy arrays, ``.npy`` memmaps.

One level; patches are cut by the zk.gather_patches kernel straight from the (memmapped) array, so only
the patch bytes are touched."""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from .source import Source, check_offsets, check_size, torch_dtype


def _guess_layout(shape, layout, name) -> str:
    if layout is not None:
        if layout not in ("CHW", "HWC"):
            raise ValueError(f"{name}: layout must be 'CHW' or 'HWC', got {layout!r}")
        return layout
    # (H, W, 3) is a picture; (3, H, W) or (1, H, W) a tensor. Ambiguous shapes default to CHW.
    return "HWC" if len(shape) == 3 and shape[-1] <= 4 < shape[0] else "CHW"


_KERNELS: dict = {}


def _cpu_gather():
    """The CPU gather kernel, chosen once per process (and per ZOOMKERN_BACKEND value). Calling it
    directly skips the custom-op dispatch, which costs 4x the kernel for the ~10 small patches a
    training step reads per image (0.6 vs 0.12 ms, measured on this 2-core CPU)."""
    from .. import backends

    key = os.environ.get("ZOOMKERN_BACKEND")
    kern = _KERNELS.get(key)
    if kern is None:
        kern = _KERNELS[key] = backends.select("gather", torch.device("cpu"))[1]
    return kern


def _torch_view(a) -> torch.Tensor:
    """A zero-copy tensor over a numpy array or read-only memmap (the gather never writes to it)."""
    if isinstance(a, torch.Tensor):
        return a
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


class _ArrayBacked(Source):
    """Reads through the gather kernel from ``self._data()``, a (1, C, H, W) or (1, H, W, C) array."""

    layout = "CHW"

    def _data(self):
        raise NotImplementedError

    def read_patches(self, offsets, size, *, level: int = 0):
        off = torch.from_numpy(check_offsets(offsets))
        ph, pw = check_size(size)
        self.check_level(level)
        data = _torch_view(self._data())
        if data.device.type != "cpu":
            import zoomkern as zk

            return zk.gather_patches(data, off[None].to(data.device), (ph, pw), layout=self.layout)[0]
        return _cpu_gather().gather(data, off[None], ph, pw, self.layout, data.dtype, None, None)[0]

    def _read_region(self, level, y0, y1, x0, x1):
        d = self._data()
        if isinstance(d, torch.Tensor):
            d = d.cpu().numpy()
        return d[0, :, y0:y1, x0:x1] if self.layout == "CHW" else d[0, y0:y1, x0:x1, :].transpose(2, 0, 1)


def _shape_of(a, layout) -> tuple[int, int, int]:
    C, H, W = a.shape if layout == "CHW" else (a.shape[2], a.shape[0], a.shape[1])
    return int(C), int(H), int(W)


class ArraySource(_ArrayBacked):
    """A (C, H, W) / (H, W, C) / (H, W) tensor or numpy array (kept by reference, not copied).
    Pickling copies the array: for files prefer ``zk.io.open`` (a .npy pickles as its path)."""

    def __init__(self, array, layout: str = "CHW"):
        if isinstance(array, np.ndarray):
            array = torch.from_numpy(array) if array.flags.writeable else torch.from_numpy(array.copy())
        if not isinstance(array, torch.Tensor):
            raise TypeError(f"array must be a torch.Tensor or numpy array, got {type(array).__name__}")
        if array.dim() == 2:
            array, layout = array[None], "CHW"
        if array.dim() != 3:
            raise ValueError(f"array must be (C, H, W), (H, W, C) or (H, W), got shape {tuple(array.shape)}")
        if layout not in ("CHW", "HWC"):
            raise ValueError(f"layout must be 'CHW' or 'HWC', got {layout!r}")
        self.layout, self._t = layout, array
        self.shape = _shape_of(array, layout)
        self.levels = (self.shape[1:],)
        self.dtype = array.dtype

    def _data(self):
        return self._t[None]


class NpySource(_ArrayBacked):
    """A ``.npy`` file as a read-only memmap: (H, W), (C, H, W) or (H, W, C); with ``index=i`` item i of a
    stack (N, ...). ``array`` lends an already-open memmap (a dataset's) so no file is reopened; it is
    dropped on pickling and the worker maps the file itself."""

    _transient = ("_mm", "_tv")

    def __init__(self, path, *, index: int | None = None, layout: str | None = None, array=None):
        self.path, self.index = os.fspath(path), index
        self._mm, self._tv = array, None
        if array is not None:
            self._mark_opened()
        a = self._arr()
        if a.ndim == 2:
            layout = "CHW"
        elif a.ndim != 3:
            raise ValueError(f"{self.path}: expected (H, W), (C, H, W) or (H, W, C) pixels, got {a.shape}")
        self.layout = _guess_layout(a.shape, layout, self.path)
        self.shape = (1, *a.shape) if a.ndim == 2 else _shape_of(a, self.layout)
        self.levels = (self.shape[1:],)
        self.dtype = torch_dtype(a.dtype, self.path)

    def _arr(self):
        if self._mm is None or not self._owned():
            if not os.path.isfile(self.path):
                raise FileNotFoundError(f"{self.path}: no such file")
            try:
                self._mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise ValueError(f"{self.path}: not a readable .npy ({type(e).__name__}: {e})") from e
            self._tv = None
            self._mark_opened()
        a = self._mm
        if self.index is not None:
            if a.ndim < 3 or not -a.shape[0] <= self.index < a.shape[0]:
                raise ValueError(f"{self.path}: index {self.index} is out of range for shape {a.shape}")
            a = a[self.index]
        return a

    def _data(self):
        a = self._arr()
        if self._tv is None:
            # one tensor view of the whole memmap per process: rows are then cheap views of it
            self._tv = _torch_view(self._mm)
        t = self._tv if self.index is None else self._tv[self.index]
        return t[None, None] if a.ndim == 2 else t[None]
