"""The Source base class: an image, possibly a pyramid, read patch by patch.

A backend says how to read an in-bounds region of one level (``_read_region``); this class does the rest
(argument checks, zero fill outside the image, choosing the level for ``lowres``, area resampling, and
dropping open file handles when pickled so DataLoader workers reopen the file themselves).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F


def torch_dtype(np_dtype, path) -> torch.dtype:
    try:
        return torch.from_numpy(np.zeros(0, dtype=np_dtype)).dtype
    except TypeError:
        raise ValueError(f"{path}: pixel type {np.dtype(np_dtype)} is not supported") from None


def check_offsets(offsets, what: str = "offsets") -> np.ndarray:
    """(k, 2) int64 top-left (y, x) as a numpy array (a CPU copy of a device tensor)."""
    if isinstance(offsets, torch.Tensor):
        if offsets.dtype != torch.int64:
            raise TypeError(f"{what} must be int64, got {str(offsets.dtype).replace('torch.', '')}")
        offsets = offsets.detach().cpu().numpy()
    else:
        offsets = np.asarray(offsets)
        if offsets.size and offsets.dtype.kind not in "iu":
            raise TypeError(f"{what} must be integers, got {offsets.dtype}")
        offsets = offsets.astype(np.int64).reshape(-1, 2) if offsets.size == 0 else offsets.astype(np.int64)
    if offsets.ndim != 2 or offsets.shape[1] != 2:
        raise ValueError(f"{what} must have shape (k, 2), got {tuple(offsets.shape)}")
    return offsets


def check_size(size, what: str = "size") -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    try:
        h, w = (int(t) for t in size)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be an int or a pair of ints, got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{what} must be positive, got {(h, w)}")
    return h, w


def scaled_size(hw, scale: float) -> tuple[int, int]:
    """(h, w) of an (H, W) image downscaled by ``scale``: rounded, at least 1. Every low view (the data
    sets' stored ones, the models' own, prediction on a source) uses this one rule, so they agree."""
    return max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale))


def area_resize(x: torch.Tensor, size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """(C, H, W) -> (C, h, w) area-averaged, back in ``dtype`` (integers rounded)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x.to(dtype).contiguous()
    work = torch.float64 if dtype == torch.float64 else torch.float32
    y = F.interpolate(x[None].to(work), size=size, mode="area")[0]
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        y = y.round_().clamp_(info.min, info.max)
    return y.to(dtype)


class Source:
    """An image of ``shape`` (C, H, W) at level 0, with pyramid ``levels`` ((H0, W0), (H1, W1), ...).

    read_patches(offsets (k, 2) int64 (y, x), size, level=0) -> (k, C, ph, pw) in ``dtype``, zero outside.
    lowres(size) -> (C, h, w) area-resampled from the smallest level at least that large.
    Subclasses set ``path``, ``shape``, ``levels``, ``dtype`` and implement ``_read_region``; attributes
    named in ``_transient`` (open handles, caches) are dropped on pickling and rebuilt lazily.
    """

    path: str | None = None
    shape: tuple[int, int, int]
    levels: tuple[tuple[int, int], ...]
    dtype: torch.dtype
    _transient: tuple[str, ...] = ()

    # -- what a backend implements ------------------------------------------------------------------
    def _read_region(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The in-bounds region [y0:y1, x0:x1] of ``level`` as a (C, y1-y0, x1-x0) array."""
        raise NotImplementedError

    def _read_level(self, level: int) -> np.ndarray:
        """A whole level (C, H_l, W_l): what ``lowres`` resamples. Tests spy on it."""
        H, W = self.levels[level]
        return self._read_region(level, 0, H, 0, W)

    # -- public API ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path if self.path is not None else f"<array {'x'.join(map(str, self.shape))}>"

    def __repr__(self) -> str:
        dt = str(self.dtype).replace("torch.", "")
        return f"{type(self).__name__}({self.name}, shape={self.shape}, levels={len(self.levels)}, {dt})"

    def check_level(self, level) -> int:
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
            raise TypeError(f"{self.name}: level must be an int, got {level!r}")
        if not 0 <= level < len(self.levels):
            raise ValueError(
                f"{self.name}: pyramid level {level} does not exist; it has {len(self.levels)} "
                f"level(s) 0..{len(self.levels) - 1} of sizes {list(self.levels)}"
            )
        return int(level)

    def downsample(self, level: int) -> float:
        """How many level-0 pixels one pixel of ``level`` spans (the mean of the two axes)."""
        level = self.check_level(level)
        (H0, W0), (H, W) = self.levels[0], self.levels[level]
        return 0.5 * (H0 / H + W0 / W)

    def read_patches(self, offsets, size, *, level: int = 0) -> torch.Tensor:
        off = check_offsets(offsets)
        ph, pw = check_size(size)
        level = self.check_level(level)
        H, W = self.levels[level]
        out = torch.zeros((off.shape[0], self.shape[0], ph, pw), dtype=self.dtype)
        view = out.numpy()
        for i, (y, x) in enumerate(off.tolist()):
            y0, y1, x0, x1 = max(y, 0), min(y + ph, H), max(x, 0), min(x + pw, W)
            if y0 < y1 and x0 < x1:
                view[i, :, y0 - y : y1 - y, x0 - x : x1 - x] = self._read_region(level, y0, y1, x0, x1)
        return out

    def level_for(self, size) -> int:
        """The smallest level at least ``size`` (h, w) in both axes; level 0 when none is."""
        h, w = check_size(size)
        best = 0
        for i, (H, W) in enumerate(self.levels):
            if H >= h and W >= w and H * W <= self.levels[best][0] * self.levels[best][1]:
                best = i
        return best

    def lowres(self, size) -> torch.Tensor:
        """(C, h, w) in ``dtype``: the nearest level at or above ``size``, area-resampled to it."""
        size = check_size(size)
        level = self.level_for(size)
        return area_resize(torch.from_numpy(np.ascontiguousarray(self._read_level(level))), size, self.dtype)

    # -- pickling: no open handle crosses a process boundary ----------------------------------------
    def __getstate__(self):
        state = dict(self.__dict__)
        for k in self._transient:
            state[k] = None
        return state

    def _owned(self) -> bool:
        """True when the handles were opened by this process (a forked worker must reopen its own)."""
        return getattr(self, "_pid", None) == os.getpid()

    def _mark_opened(self) -> None:
        self._pid = os.getpid()
