"""Tiled (or stripped) pyramidal TIFF/BigTIFF through tifffile + zarr, decoding only the touched tiles.

Each level of ``series[0]`` is a lazy zarr array (``aszarr``); a read decodes the chunks (tiles) the
region overlaps, one chunk-aligned read each, and keeps them in a byte-bounded LRU cache."""

from __future__ import annotations

import os

import numpy as np

from .cache import TileCache
from .source import Source, torch_dtype

# Axes of a level's array that we understand: Y, X and one channel axis (S samples or C channels).
_LAYOUTS = {"YX": None, "YXS": "HWC", "YXC": "HWC", "SYX": "CHW", "CYX": "CHW"}


class TiffSource(Source):
    """A TIFF read tile by tile. ``cache_bytes`` bounds the decoded-tile cache (per process)."""

    _transient = ("_tif", "_arrays", "_cache")

    def __init__(self, path, *, cache_bytes: int = 64 << 20):
        self.path = os.fspath(path)
        self.cache_bytes = int(cache_bytes)
        self._tif = self._arrays = self._cache = None
        tif = self._open()
        series = tif.series[0]
        axes = series.levels[0].axes
        if axes not in _LAYOUTS:
            raise ValueError(f"{self.path}: unsupported TIFF axes {axes!r} (supported: {sorted(_LAYOUTS)})")
        self._layout = _LAYOUTS[axes]
        self.levels, channels = [], set()
        for lv in series.levels:
            if lv.axes != axes:
                raise ValueError(f"{self.path}: pyramid levels disagree on axes ({lv.axes!r} vs {axes!r})")
            shp = dict(zip(lv.axes, lv.shape, strict=True))
            self.levels.append((int(shp["Y"]), int(shp["X"])))
            channels.add(int(shp.get("S", shp.get("C", 1))))
        self.levels = tuple(self.levels)
        if len(channels) != 1:
            raise ValueError(f"{self.path}: pyramid levels disagree on the number of channels {channels}")
        self.shape = (channels.pop(), *self.levels[0])
        self.dtype = torch_dtype(series.dtype, self.path)
        self._check_complete(series)

    def _open(self):
        """The TiffFile of this process, opened on first use (and again in each DataLoader worker)."""
        if self._tif is not None and self._owned():
            return self._tif
        import tifffile

        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: no such file")
        try:
            tif = tifffile.TiffFile(self.path)
            if not tif.series:
                raise ValueError("no image series")
        except Exception as e:  # tifffile raises TiffFileError, struct.error, ValueError, ...
            raise ValueError(f"{self.path}: not a readable TIFF ({type(e).__name__}: {e})") from e
        self._tif, self._arrays, self._cache = tif, {}, TileCache(self.cache_bytes)
        self._mark_opened()
        return tif

    def _check_complete(self, series) -> None:
        """A truncated file names itself at open, not as a decoder error deep inside training."""
        size = os.path.getsize(self.path)
        for i, lv in enumerate(series.levels):
            for page in lv.pages:
                if page is None:
                    continue
                page = page.keyframe if not hasattr(page, "dataoffsets") else page
                ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=True) if c]
                if ends and max(ends) > size:
                    raise ValueError(
                        f"{self.path}: truncated: level {i} needs {max(ends)} bytes, the file has {size}"
                    )

    def _array(self, level: int):
        self._open()
        z = self._arrays.get(level)
        if z is None:
            import zarr

            z = zarr.open(self._tif.series[0].aszarr(level=level), mode="r")
            self._arrays[level] = z
        return z

    def _chunk(self, level: int) -> tuple[int, int]:
        z = self._array(level)
        yx = [i for i, a in enumerate(self._axes()) if a in "YX"]
        return int(z.chunks[yx[0]]), int(z.chunks[yx[1]])

    def _axes(self) -> str:
        return {None: "YX", "HWC": "YXS", "CHW": "SYX"}[self._layout]

    def _slice(self, z, ys: slice, xs: slice) -> np.ndarray:
        """z[ys, xs] as (C, h, w), whatever the stored axis order."""
        if self._layout is None:
            return np.asarray(z[ys, xs])[None]
        if self._layout == "HWC":
            return np.ascontiguousarray(np.asarray(z[ys, xs, :]).transpose(2, 0, 1))
        return np.asarray(z[:, ys, xs])

    def _tile(self, level: int, cy: int, cx: int) -> np.ndarray:
        def load():
            z = self._array(level)
            th, tw = self._chunk(level)
            H, W = self.levels[level]
            ys = slice(cy * th, min((cy + 1) * th, H))
            xs = slice(cx * tw, min((cx + 1) * tw, W))
            try:
                return self._slice(z, ys, xs)
            except Exception as e:
                raise ValueError(
                    f"{self.path}: cannot decode level {level} tile ({cy}, {cx}) "
                    f"({type(e).__name__}: {e}); the file may be corrupt"
                ) from e

        self._open()
        return self._cache.get((level, cy, cx), load)

    def _read_region(self, level, y0, y1, x0, x1):
        th, tw = self._chunk(level)
        out = np.empty((self.shape[0], y1 - y0, x1 - x0), dtype=self._np_dtype())
        for cy in range(y0 // th, (y1 - 1) // th + 1):
            for cx in range(x0 // tw, (x1 - 1) // tw + 1):
                t = self._tile(level, cy, cx)
                ty0, tx0 = cy * th, cx * tw
                a0, a1 = max(y0, ty0), min(y1, ty0 + t.shape[1])
                b0, b1 = max(x0, tx0), min(x1, tx0 + t.shape[2])
                out[:, a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = t[:, a0 - ty0 : a1 - ty0, b0 - tx0 : b1 - tx0]
        return out

    def _read_level(self, level):
        # A whole (small) level in one zarr read, bypassing the tile cache it would only flush.
        z = self._array(level)
        try:
            return self._slice(z, slice(None), slice(None))
        except Exception as e:
            raise ValueError(f"{self.path}: cannot decode level {level} ({type(e).__name__}: {e})") from e

    def _np_dtype(self):
        import torch

        return torch.empty(0, dtype=self.dtype).numpy().dtype

    @property
    def cache(self) -> TileCache:
        self._open()
        return self._cache
