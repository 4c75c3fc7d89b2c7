"""Writers of small real image files for the io tests: tiled pyramidal TIFFs, .npy, Pillow formats."""

from __future__ import annotations

import numpy as np


def pyramid(arr: np.ndarray, n_levels: int) -> list[np.ndarray]:
    """Level 0 and successive 2x area reductions (H, W[, S]) in arr's dtype."""
    levels = [arr]
    for _ in range(n_levels - 1):
        a = levels[-1]
        h, w = a.shape[0] // 2, a.shape[1] // 2
        b = a[: 2 * h, : 2 * w].astype(np.float64)
        b = (b[0::2, 0::2] + b[1::2, 0::2] + b[0::2, 1::2] + b[1::2, 1::2]) / 4
        levels.append(np.round(b).astype(arr.dtype))
    return levels


def write_tiff(path, arr: np.ndarray, *, n_levels=3, tile=(64, 64), compression="zlib") -> list[np.ndarray]:
    """A tiled pyramidal (Big)TIFF, reduced levels as successive top-level pages with subfiletype=1 (so
    OpenSlide sees them, see FIELD-NOTES). Returns the level arrays as written."""
    import tifffile

    levels = pyramid(arr, n_levels)
    photometric = "rgb" if arr.ndim == 3 else "minisblack"
    with tifffile.TiffWriter(path, bigtiff=True) as w:
        for i, a in enumerate(levels):
            w.write(a, tile=tile, compression=compression, photometric=photometric,
                    subfiletype=1 if i else 0)  # fmt: skip
    return levels


def texture(h: int, w: int, channels: int = 3, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    """Smooth structure plus noise: JPEG keeps it recognisable; neighbouring pixels differ."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 100 + 60 * np.sin(y / 9.0) * np.cos(x / 13.0)
    chans = [base + 20 * c + rng.normal(0, 8, (h, w)) for c in range(channels)]
    a = np.stack(chans, -1) if channels > 1 else chans[0]
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 255
    scale = top / 255
    return np.clip(a * scale, 0, top).astype(dtype)


def slice_padded(level: np.ndarray, y: int, x: int, ph: int, pw: int) -> np.ndarray:
    """The (C, ph, pw) patch at (y, x) of an (H, W[, S]) array, zero outside: what read_patches must give."""
    a = level if level.ndim == 3 else level[..., None]
    H, W = a.shape[:2]
    out = np.zeros((ph, pw, a.shape[2]), a.dtype)
    y0, y1, x0, x1 = max(y, 0), min(y + ph, H), max(x, 0), min(x + pw, W)
    if y0 < y1 and x0 < x1:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = a[y0:y1, x0:x1]
    return out.transpose(2, 0, 1)


def border_offsets(H: int, W: int, ph: int, pw: int) -> np.ndarray:
    """Patches over every border and corner, fully outside, and inside: (k, 2) int64 (y, x)."""
    ys = [-ph - 3, -ph + 1, -5, 0, H // 2 - 7, H - ph, H - ph + 3, H - 1, H + 2]
    xs = [-pw - 1, -pw + 2, -3, 0, W // 3, W - pw, W - pw + 5, W - 1, W + 7]
    return np.array([(y, x) for y in ys for x in xs], dtype=np.int64)
