"""Whole-slide images: a folder of slides with a labels CSV (CAMELYON16 style), tissue masks, padded batches.

    ds = zk.data.SlideFolder("slides/", "slides/labels.csv", scale=1 / 64)
    source, lowres, label = ds[0]          # a zk.io Source (read patch by patch), (C, h, w) uint8, int
    mask = zk.data.tissue_mask(lowres)     # (h, w) bool: Otsu on saturation (RGB) or darkness (grey)
    sources, low, labels, mask = collate_slides([ds[0], ds[1]])   # slides of different sizes, padded

The low view comes from the nearest pyramid level (``Source.lowres``), never from level 0 when a smaller
level serves, so a 100000 x 100000 slide costs a few MB here.
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import torch

_HEADER_WORDS = {"label", "labels", "class", "target", "diagnosis", "type"}


def _read_labels(path: str) -> list[tuple[str, str]]:
    """(slide, label) rows of a CSV ``slide,label[,...]``; a header row is recognised and skipped."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"labels CSV {path}: no such file")
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if rows and len(rows[0]) >= 2 and rows[0][1].strip().lower() in _HEADER_WORDS:
        rows = rows[1:]
    bad = [i for i, r in enumerate(rows) if len(r) < 2 or not r[0].strip() or not r[1].strip()]
    if bad:
        raise ValueError(f"labels CSV {path}: row {bad[0] + 1} is not 'slide,label': {rows[bad[0]]!r}")
    if not rows:
        raise ValueError(f"labels CSV {path}: no slides listed")
    return [(r[0].strip(), r[1].strip()) for r in rows]


def _classes(labels: list[str]) -> list[str]:
    """Class names: integers keep their value (0..max); names sort, so CAMELYON's Normal < Tumor."""
    try:
        ints = [int(v) for v in labels]
    except ValueError:
        return sorted(set(labels))
    if min(ints) < 0:
        raise ValueError(f"integer labels must be >= 0, got {min(ints)}")
    return [str(i) for i in range(max(ints) + 1)]


def _resolve(root: str, name: str) -> str | None:
    """The file for ``name``: as written, or ``name`` plus any extension zk.io opens."""
    from .. import io

    path = os.path.join(root, name)
    if os.path.isfile(path):
        return path
    for ext in io.EXTENSIONS:
        if os.path.isfile(path + ext):
            return path + ext
    return None


class SlideFolder(torch.utils.data.Dataset):
    """Slides in ``root`` listed in ``labels_csv`` (default ``root/labels.csv``): rows ``slide,label``,
    header optional, the slide named with or without its extension, labels integers or names.

    ``ds[i] -> (source, lowres, label)``: a zk.io Source, the (C, h, w) low view at ``scale`` of level 0
    (from the nearest pyramid level) in the source dtype, the class index. ``ds.labels``, ``ds.classes``,
    ``ds.paths``. Every listed slide must exist: the error names the CSV and each missing slide.
    ``ds.collate`` batches items for a DataLoader (see collate_slides; ``tissue``: and the tissue mask).
    """

    def __init__(self, root, labels_csv=None, *, scale: float = 1 / 64, backend: str | None = None,
                 classes: list[str] | None = None, tissue: bool = True):  # fmt: skip
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"slide folder {self.root}: no such directory")
        if labels_csv is None:
            labels_csv = os.path.join(self.root, "labels.csv")
        self.labels_csv = os.fspath(labels_csv)
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale!r}")
        self.scale, self.backend, self.tissue = float(scale), backend, tissue
        rows = _read_labels(self.labels_csv)
        missing = [name for name, _ in rows if _resolve(self.root, name) is None]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise FileNotFoundError(
                f"labels CSV {self.labels_csv} lists {len(missing)} slide(s) not found in "
                f"{self.root}: {shown}"
            )
        self.names = [name for name, _ in rows]
        self.paths = [_resolve(self.root, name) for name in self.names]
        self.classes = list(classes) if classes is not None else _classes([lab for _, lab in rows])
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({lab for _, lab in rows if lab not in index})
        if unknown:
            raise ValueError(f"labels CSV {self.labels_csv}: labels {unknown} not in classes {self.classes}")
        self.labels = [index[lab] for _, lab in rows]

    def __len__(self) -> int:
        return len(self.paths)

    def open(self, i: int):
        from .. import io

        return io.open(self.paths[i], backend=self.backend)

    def low_size(self, source) -> tuple[int, int]:
        # ceil, as pyramid levels are sized: at scale 1/64 the view is exactly level 6, no resampling
        # (round gave 1562 for 1563 px, and resampling 2.4 Mpx by one pixel cost 0.7 s a slide)
        H, W = source.shape[1:]
        return (max(1, math.ceil(H * self.scale - 1e-9)), max(1, math.ceil(W * self.scale - 1e-9)))

    def __getitem__(self, i: int):
        src = self.open(i)
        return src, src.lowres(self.low_size(src)), self.labels[i]

    def collate(self, items):
        """The training loader's collate: padded low views and the (tissue and) padding mask."""
        return collate_slides(items, tissue=self.tissue)


def tissue_mask(lowres, *, min_fraction: float = 0.0) -> torch.Tensor:
    """(C, h, w) low view -> (h, w) bool tissue mask: Otsu's threshold (skimage) on the saturation of an
    RGB view (stained tissue is coloured, glass is grey-white) or on the darkness of a grey one, dilated
    by one pixel so that tissue edges stay in. A view where no threshold separates anything (uniform, or
    the mask would keep less than ``min_fraction``) is all tissue: the mask must never hide everything."""
    from scipy.ndimage import binary_dilation
    from skimage.filters import threshold_otsu

    x = torch.as_tensor(lowres)
    if x.dim() != 3:
        raise ValueError(f"lowres must be (C, h, w), got {tuple(x.shape)}")
    a = x.float().numpy()
    if not x.dtype.is_floating_point:
        a = a / float(torch.iinfo(x.dtype).max)
    if a.shape[0] >= 3:
        mx, mn = a[:3].max(0), a[:3].min(0)
        v = (mx - mn) / np.maximum(mx, 1e-6)  # HSV saturation
    else:
        v = 1.0 - a[0]
    if float(v.max() - v.min()) < 1e-3:
        return torch.ones(v.shape, dtype=torch.bool)
    m = binary_dilation(v > threshold_otsu(v), iterations=1)
    if m.mean() <= min_fraction or not m.any():
        return torch.ones(v.shape, dtype=torch.bool)
    return torch.from_numpy(m)


def pad_views(views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, h_i, w_i) views -> ((B, C, h, w) zero-padded at the bottom and right, (B, h, w) bool: True on
    each view's own pixels). Slides of different sizes share one low-view canvas this way."""
    h = max(v.shape[-2] for v in views)
    w = max(v.shape[-1] for v in views)
    out = views[0].new_zeros((len(views), views[0].shape[0], h, w))
    valid = torch.zeros((len(views), h, w), dtype=torch.bool)
    for i, v in enumerate(views):
        out[i, :, : v.shape[-2], : v.shape[-1]] = v
        valid[i, : v.shape[-2], : v.shape[-1]] = True
    return out, valid


def collate_slides(items, *, tissue: bool = True):
    """DataLoader collate for SlideFolder items -> (sources list, low (B, C, h, w), labels (B,), mask
    (B, h, w) bool): the first three as for any data set, then the padding mask, and-ed with the tissue
    mask when ``tissue``. Pass the mask to the model: ``model(sources, low, mask=mask)``."""
    sources = [it[0] for it in items]
    views = [torch.as_tensor(it[1]) for it in items]
    low, mask = pad_views(views)
    if tissue:
        for i, v in enumerate(views):
            mask[i, : v.shape[-2], : v.shape[-1]] &= tissue_mask(v)
    labels = torch.tensor([int(it[2]) for it in items], dtype=torch.long)
    return sources, low, labels, mask
