"""Synthetic whole-slide images: RGB pyramidal tiled TIFFs written tile by tile, never a level in memory.

A slide is tissue-like texture (pink stroma, purple nuclei, lighter gaps) on a white background; positives
also hold a few clusters of small dark-brown disks ("stained cells", 12-28 px across) inside the tissue.
Every pixel of every pyramid level is a function of its level-0 position, computed per tile:

- the tissue outline is a smooth field on a coarse grid (about 20 cells across), interpolated per tile;
- the texture is periodic (2048 px at level 0) and pre-downsampled by exact area means for each level,
  so a level-L tile is a slice of a small array, not a reduction of the level above;
- the disks are drawn with anti-aliased coverage at each level's scale (sub-pixel disks fade by area).

So no level needs another in memory, and tiles far from tissue are one cached white tile. The levels are
successive top-level pages with ``subfiletype=1``: OpenSlide's generic-TIFF reader and tifffile both see
the pyramid (see FIELD-NOTES).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass

import numpy as np

TILE = 256
PERIOD = 1024  # texture period at level 0 (a power of two: every level's texture is an exact area mean)
BACKGROUND = np.array([243, 243, 245], np.float32)  # glass, not pure white, as in scanned slides
_BG16 = BACKGROUND.astype(np.uint16)
STROMA = (np.array([236, 172, 204], np.float32), np.array([200, 112, 168], np.float32))
NUCLEUS = np.array([92, 48, 136], np.float32)
EDGE = 40.0  # tissue edge softness, level-0 pixels
EDGE_NOISE = 0.3  # how far (field units) the texture pushes the edge in and out
STAIN = np.array([96, 52, 22], np.float32)  # the tiny objects: dark brown, a colour the tissue never has


@dataclass
class _Slide:
    H: int
    W: int
    field: np.ndarray  # (gy, gx) tissue field on the coarse grid nodes
    step: float  # level-0 pixels between grid nodes
    threshold: float
    textures: list  # per level: ((Q+TILE, Q+TILE, 3), (3, Q+TILE, Q+TILE)) uint8, wrapped periodic
    disks: np.ndarray  # (n, 4) float64: cy, cx, radius (level-0 px), shade


def level_sizes(H: int, W: int, min_size: int = 512) -> list[tuple[int, int]]:
    """Level 0 first, halving until the longer side is at most ``min_size`` (ceil, as OpenSlide expects)."""
    sizes = [(H, W)]
    while max(sizes[-1]) > min_size:
        d = 2 ** len(sizes)
        sizes.append((math.ceil(H / d), math.ceil(W / d)))
    return sizes


def _gauss(a: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian filter through the FFT (exact wrap-around; 10x faster than scipy's at sigma 20)."""
    ky = np.fft.fftfreq(a.shape[0])[:, None]
    kx = np.fft.rfftfreq(a.shape[1])[None, :]
    g = np.exp(-2 * (np.pi * sigma) ** 2 * (ky**2 + kx**2))
    return np.fft.irfft2(np.fft.rfft2(a) * g, s=a.shape).astype(np.float32)


def _texture(rng: np.random.Generator) -> np.ndarray:
    """(PERIOD, PERIOD, 3) uint8 periodic H&E-like texture at level-0 scale."""
    P = PERIOD
    coarse = _gauss(rng.standard_normal((P, P)).astype(np.float32), 20)
    fine = _gauss(rng.standard_normal((P, P)).astype(np.float32), 5)
    v = coarse / coarse.std() + 0.5 * fine / fine.std()
    v = np.clip(0.5 + (v - v.mean()) / (4 * v.std()), 0, 1)
    imp = np.zeros((P, P), np.float32)
    n = P * P // 700  # nucleus density: about one per 26x26 px
    imp[rng.integers(0, P, n), rng.integers(0, P, n)] = 1.0
    nuc = np.clip((_gauss(imp, 2.2) * 30.0 - 0.35) * 3.0, 0, 1)[..., None]
    rgb = STROMA[0] + (STROMA[1] - STROMA[0]) * v[..., None]
    gaps = np.clip((v[..., None] - 0.78) * 8, 0, 1)  # pale gaps (fat, lumen) where v is highest
    rgb = rgb * (1 - gaps) + BACKGROUND * gaps
    rgb = rgb * (1 - nuc) + NUCLEUS * nuc
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _level_texture(tex: np.ndarray, d: int) -> np.ndarray:
    """Area mean over d x d blocks (exact: PERIOD is a multiple of d), then wrapped out by a tile so that
    ``out[y % Q : y % Q + TILE]`` is always one slice; as (HWC, CHW) copies."""
    Q = max(1, PERIOD // d)
    if d <= PERIOD:
        t = tex.reshape(Q, PERIOD // Q, Q, PERIOD // Q, 3).astype(np.float32).mean((1, 3))
    else:
        t = tex.reshape(-1, 3).astype(np.float32).mean(0)[None, None]
    t = np.clip(t + 0.5, 0, 255).astype(np.uint8)
    reps = (TILE + Q - 1) // Q + 1
    hwc = np.ascontiguousarray(np.tile(t, (reps, reps, 1))[: Q + TILE, : Q + TILE])
    return hwc, np.ascontiguousarray(hwc.transpose(2, 0, 1))


def _field(rng: np.random.Generator, H: int, W: int) -> tuple[np.ndarray, float, float]:
    """A smooth field on a coarse grid, higher near the centre; tissue where it exceeds the threshold."""
    from scipy.ndimage import gaussian_filter

    step = max(H, W) / 20.0
    gy, gx = math.ceil(H / step) + 2, math.ceil(W / step) + 2
    f = gaussian_filter(rng.standard_normal((gy, gx)), 1.4, mode="nearest")
    f /= f.std() + 1e-9
    yy, xx = np.meshgrid(np.arange(gy) * step / H - 0.5, np.arange(gx) * step / W - 0.5, indexing="ij")
    f -= 12.0 * (yy**2 + xx**2)  # tissue in the middle, glass along the borders
    inside = f[(np.abs(yy) < 0.45) & (np.abs(xx) < 0.45)]
    return f, step, float(np.quantile(inside, 0.55))  # about 40% of the slide is tissue


def _interp(f: np.ndarray, step: float, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Separable smoothstep interpolation of the grid field at level-0 rows ys and columns xs."""

    def axis(c, n):
        u = np.clip(c / step, 0, n - 1.000001)
        i = np.floor(u).astype(np.int64)
        t = u - i
        return i, (t * t * (3 - 2 * t)).astype(np.float32)

    iy, ty = axis(ys, f.shape[0])
    ix, tx = axis(xs, f.shape[1])
    rows = f[iy] * (1 - ty)[:, None] + f[iy + 1] * ty[:, None]  # (th, gx)
    return (rows[:, ix] * (1 - tx) + rows[:, ix + 1] * tx).astype(np.float32)


def _disks(rng: np.random.Generator, f, step, thr, H: int, W: int) -> np.ndarray:
    """A few clusters of 15-40 disks each, centred where the tissue is solid."""
    out = []
    n_clusters = int(rng.integers(2, 5))
    R = min(300.0, min(H, W) / 25)
    for _ in range(n_clusters):
        for _ in range(1000):
            cy, cx = rng.uniform(0.1, 0.9) * H, rng.uniform(0.1, 0.9) * W
            if _interp(f, step, np.array([cy]), np.array([cx]))[0, 0] > thr + 0.4:
                break
        n = int(rng.integers(15, 41))
        r = R * np.sqrt(rng.uniform(0, 1, n))
        a = rng.uniform(0, 2 * np.pi, n)
        out.append(np.stack([cy + r * np.sin(a), cx + r * np.cos(a), rng.uniform(6, 14, n),
                             rng.uniform(0.85, 1.15, n)], 1))  # fmt: skip
    return np.concatenate(out)


def make_slide(H: int, W: int, positive: bool, seed: int, n_levels: int | None = None) -> _Slide:
    rng = np.random.default_rng(seed)
    tex = _texture(rng)
    f, step, thr = _field(rng, H, W)
    disks = _disks(rng, f, step, thr, H, W) if positive else np.zeros((0, 4))
    n_levels = n_levels or len(level_sizes(H, W))
    return _Slide(H, W, f, step, thr, [_level_texture(tex, 2**i) for i in range(n_levels)], disks)


def render_tile(s: _Slide, level: int, ty: int, tx: int, white: np.ndarray) -> np.ndarray:
    """(TILE, TILE, 3) uint8 tile (ty, tx) of ``level``; ``white`` is returned (not copied) for glass."""
    d = 2**level
    y0, x0 = ty * TILE, tx * TILE
    # level-0 centres of this tile's pixels
    ys = (y0 + np.arange(TILE, dtype=np.float32) + 0.5) * d - 0.5
    xs = (x0 + np.arange(TILE, dtype=np.float32) + 0.5) * d - 0.5
    disks = s.disks
    if len(disks):
        near = (np.abs(disks[:, 0] / d - (y0 + TILE / 2)) < TILE / 2 + disks[:, 2] / d + 2) & (
            np.abs(disks[:, 1] / d - (x0 + TILE / 2)) < TILE / 2 + disks[:, 2] / d + 2
        )
        disks = disks[near]
    # The field's maximum over the tile is at most that of the grid nodes around it (convex weights).
    iy0, iy1 = int(ys[0] // s.step), min(int(ys[-1] // s.step) + 2, s.field.shape[0])
    ix0, ix1 = int(xs[0] // s.step), min(int(xs[-1] // s.step) + 2, s.field.shape[1])
    nodes = s.field[iy0:iy1, ix0:ix1]
    soft = max(EDGE, d) / s.step  # the edge's half-width in field units
    if not len(disks) and nodes.max() + EDGE_NOISE / 2 + soft < s.threshold:
        return white
    tex_hwc, tex_chw = s.textures[level]
    Q = tex_hwc.shape[0] - TILE
    sl = (slice(y0 % Q, y0 % Q + TILE), slice(x0 % Q, x0 % Q + TILE))
    if not len(disks) and nodes.min() - EDGE_NOISE / 2 - soft > s.threshold:
        return np.ascontiguousarray(tex_hwc[sl])  # wholly inside the tissue (most tissue tiles)
    f = _interp(s.field, s.step, ys, xs)
    # Texture-modulated edge, EDGE level-0 pixels soft (at least one pixel of the level).
    f += (soft - s.threshold - EDGE_NOISE / 2) + tex_chw[1][sl] * np.float32(EDGE_NOISE / 255)
    alpha = np.clip(f * np.float32(0.5 / soft), 0, 1)
    if not len(disks) and alpha.min() == 1.0:
        return np.ascontiguousarray(tex_hwc[sl])
    # Integer blend (a in 0..256) plane by plane: broadcasting over a last axis of 3 was 6x slower.
    a = (alpha * 256 + 0.5).astype(np.uint16)
    b = 256 - a
    img = np.empty((TILE, TILE, 3), np.uint8)
    for c in range(3):
        img[..., c] = (tex_chw[c][sl] * a + (b * int(_BG16[c]) + 128)) >> 8
    if not len(disks):
        return img
    img = img.astype(np.float32)
    for cy, cx, r, shade in disks:
        # in this level's pixels, relative to the tile; pixel i's centre is i + 0.5
        cy, cx, r = (cy + 0.5) / d - y0, (cx + 0.5) / d - x0, r / d
        a0, a1 = max(0, int(cy - r - 2)), min(TILE, int(cy + r + 3))
        b0, b1 = max(0, int(cx - r - 2)), min(TILE, int(cx + r + 3))
        if a0 >= a1 or b0 >= b1:
            continue
        yy = np.arange(a0, a1, dtype=np.float32)[:, None] + 0.5 - cy
        xx = np.arange(b0, b1, dtype=np.float32)[None, :] + 0.5 - cx
        cov = np.clip(r - np.sqrt(yy * yy + xx * xx) + 0.5, 0, 1) * min(1.0, math.pi * r * r)
        cov = cov[..., None]
        win = img[a0:a1, b0:b1]
        img[a0:a1, b0:b1] = win * (1 - cov) + np.clip(STAIN * shade, 0, 255) * cov
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def write_synthetic_slide(
    path: str,
    size: tuple[int, int] = (100_000, 100_000),
    *,
    positive: bool,
    seed: int = 0,
    compression: str = "jpeg",
    quality: int = 85,
    min_level_size: int = 512,
    progress: bool = True,
) -> dict:
    """Write one slide to ``path`` (BigTIFF). Returns {"path", "levels", "tiles", "bytes", "disks"}.

    compression: "jpeg" (``quality`` 1-100) or "deflate" (lossless, larger). Peak memory is a few tiles
    plus the level textures (about 17 MB), whatever the size."""
    import tifffile
    from tqdm import tqdm

    H, W = (size, size) if isinstance(size, int) else map(int, size)
    if H < 1 or W < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    if compression not in ("jpeg", "deflate"):
        raise ValueError(f"compression must be 'jpeg' or 'deflate', got {compression!r}")
    sizes = level_sizes(H, W, min_level_size)
    s = make_slide(H, W, positive, seed, len(sizes))
    grids = [(math.ceil(h / TILE), math.ceil(w / TILE)) for h, w in sizes]
    total = sum(a * b for a, b in grids)
    white = np.empty((TILE, TILE, 3), np.uint8)
    white[:] = np.clip(BACKGROUND + 0.5, 0, 255).astype(np.uint8)
    args = dict(level=quality) if compression == "jpeg" else dict(level=6)
    tmp = path + ".tmp"
    bar = tqdm(total=total, desc=os.path.basename(path), unit="tile", disable=not progress, smoothing=0.05)
    try:
        with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
            for lv, ((h, w), (gy, gx)) in enumerate(zip(sizes, grids, strict=True)):

                def tiles(lv=lv, gy=gy, gx=gx):
                    for ty in range(gy):
                        for tx in range(gx):
                            bar.update()  # before the yield: the writer never resumes after the last
                            yield render_tile(s, lv, ty, tx, white)

                tw.write(tiles(), shape=(h, w, 3), dtype=np.uint8, tile=(TILE, TILE), photometric="rgb",
                         compression=compression, compressionargs=args, subfiletype=1 if lv else 0,
                         metadata=None)  # fmt: skip
        os.replace(tmp, path)
    finally:
        bar.close()
        if os.path.exists(tmp):
            os.remove(tmp)
    return dict(path=path, levels=sizes, tiles=total, bytes=os.path.getsize(path), disks=len(s.disks))


def make_synthetic_slides(
    root: str,
    n: int,
    size=(100_000, 100_000),
    *,
    seed: int = 0,
    compression: str = "jpeg",
    quality: int = 85,
    labels_csv: str = "labels.csv",
    progress: bool = True,
) -> list[dict]:
    """``n`` slides ``slide_000.tif``... in ``root`` (labels alternate 0, 1, 0, ...: balanced) and the
    CSV ``slide,label`` (slide names without extension, CAMELYON16 style). Slide i uses seed
    ``seed * 1000 + i``. A rerun with the same settings keeps the slides already written (``meta.json``
    records the settings; other settings in the same ``root`` are an error naming the difference)."""
    import json

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    H, W = (size, size) if isinstance(size, int) else map(int, size)
    os.makedirs(root, exist_ok=True)
    meta = dict(size=[H, W], seed=seed, compression=compression, quality=quality, version=1)
    meta_path = os.path.join(root, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as fh:
            old = json.load(fh)
        bad = [f"{k}={old.get(k)!r} (asked: {v!r})" for k, v in meta.items() if old.get(k) != v]
        if bad:
            raise ValueError(
                f"{root} holds slides made with other settings: {', '.join(bad)}; use another root"
            )
    with open(meta_path, "w") as fh:
        json.dump(meta, fh)
    out = []
    for i in range(n):
        name, label = f"slide_{i:03d}", i % 2
        path = os.path.join(root, name + ".tif")
        if os.path.exists(path):  # written atomically: an existing file is complete
            out.append(dict(path=path, bytes=os.path.getsize(path), label=label, reused=True))
            continue
        info = write_synthetic_slide(path, (H, W), positive=bool(label), seed=seed * 1000 + i,
                                     compression=compression, quality=quality, progress=progress)  # fmt: skip
        out.append(dict(info, label=label))
    with open(os.path.join(root, labels_csv), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slide", "label"])
        for i in range(n):
            w.writerow([f"slide_{i:03d}", i % 2])
    return out
