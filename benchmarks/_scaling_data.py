"""Inputs of the scaling benchmark: the per-side configuration and the cached pyramidal TIFFs.

Every side gets the same fixed pixel budgets (the paper's gigapixel setting): a ~1024-pixel low view,
an 8x8 stage-I tile grid whose tile views are ~128 pixels (read from the pyramid level nearest
``s2``), 64-pixel patches, 5 tiles x 2 sub-cells = 10 patches, and ATS the same low view and 10
patches. So as the image grows, the scales ``s1``/``s2`` shrink and the work stays the same.

Every side's image is a synthetic slide written once into the cache folder (a pyramidal BigTIFF).
Below 8000 pixels the benchmark decodes its level 0 into a tensor in RAM; from 8000 up it reads the
file through zk.io, never holding the image as one tensor.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

SIDES = (1000, 2000, 4000, 8000, 16000, 32000, 100000)
TIFF_FROM = 8000  # sides >= this are read from disk through zk.io, never held as one tensor
LOW, GRID, TILE_VIEW, PATCH, N_TILES, N_SUB, SUB_GRID = 1024, 8, 128, 64, 5, 2, 8
MODELS = ("zoomin", "ats", "cnn_lowres", "cnn_full")
FORMAT = 1  # bump when the written file changes, so stale caches are not reused


def config(side: int) -> dict:
    """The per-side configuration, written into every result's extra_info."""
    low = min(LOW, side)
    tile = math.ceil(side / GRID)  # level-0 pixels of one stage-I tile
    pool2 = max(1, round(tile / TILE_VIEW))  # s2 = 1 / pool2: the tile view is ~TILE_VIEW pixels
    return dict(
        side=side,
        source="tiff" if side >= TIFF_FROM else "tensor",
        low_view=low,
        s1=low / side,
        tile_grid=GRID,
        tile_size=tile,
        s2=1.0 / pool2,
        tile_view=tile // pool2,
        sub_grid=SUB_GRID,
        patch_size=PATCH,
        n_tiles=N_TILES,
        n_sub=N_SUB,
        n_patches=N_TILES * N_SUB,  # ATS's budget: the same number of full-resolution patches
        ats_grid=low,  # ATS attends over every pixel of the same low view
        cnn_lowres_input=low,
        cnn_full_input=side,
    )


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "zoomkern" / "scaling"


def cached_tiff(side: int, cache: Path | None = None) -> Path:
    """The benchmark's image of ``side`` x ``side``: a synthetic slide (zoomkern.data.synthetic_slides,
    the writer of python/make_synthetic_slide.py: tissue-like texture on white, a few tiny objects, JPEG
    tiles of 256, levels halving down to < 512 pixels), written tile by tile on first use and reused.
    Delete the cache folder when that writer changes (FORMAT names the version written)."""
    from zoomkern.data.synthetic_slides import write_synthetic_slide

    cache = Path(cache) if cache else default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"scaling_{side}_v{FORMAT}.tif"
    if not path.exists():  # the writer renames a finished file into place: an existing one is whole
        write_synthetic_slide(str(path), (side, side), positive=True, seed=0, progress=side >= 8000)
    return path
