"""Shared pieces of the file-backed image data sets: reading RGB files exactly, the low-resolution view,
and a Dataset base class with the DESIGN.md interface (``labels``, ``classes``, ``paths``, ``ds[i]``)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..io.source import scaled_size


class DataError(ValueError):
    """Bad input on disk; the message names the file (and line, where there is one)."""


def read_rgb(path) -> np.ndarray:
    """(3, H, W) uint8: the file's pixels in R, G, B order, exactly as stored.

    Pillow decodes BMP/JPEG/PNG to RGB (OpenCV would hand back BGR); palette, grey and RGBA files are
    converted to RGB (alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode != "RGB":
                im = im.convert("RGB")
            a = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def lowres_view(image: torch.Tensor, scale: float) -> torch.Tensor:
    """(C, H, W) uint8 -> (C, h, w) uint8 area average at ``scale`` (h = round(H * scale))."""
    size = scaled_size(image.shape[-2:], scale)
    low = F.interpolate(image[None].float(), size=size, mode="area")[0]
    return low.round_().clamp_(0, 255).to(torch.uint8)


class ImageFileDataset(torch.utils.data.Dataset):
    """Images on disk with integer labels: item i -> (image (3, H, W) uint8, lowres (3, h, w) uint8, label).

    ``transform`` (a callable on the (C, H, W) uint8 tensor, e.g. a training augmentation) runs before the
    low-resolution view is made, so both views show the same image. ``cache=True`` keeps decoded images in
    RAM (small sets such as the 100 colon images: 75 MB); the cache is per process and never pickled.
    ``size`` (H, W), when given, is checked on every read: a wrong-sized file is an error naming it.
    """

    def __init__(self, paths, labels, classes, *, scale: float = 0.1, transform: Callable | None = None,
                 cache: bool = False, size: tuple[int, int] | None = None):  # fmt: skip
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        if not 0 < scale <= 1:
            raise ValueError(f"scale={scale!r}: need 0 < scale <= 1")
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.scale, self.transform, self.cache, self.size = scale, transform, cache, size
        self._cache: dict[int, np.ndarray] = {}
        self._pid = os.getpid()

    def __getstate__(self):
        return {**self.__dict__, "_cache": {}}

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> np.ndarray:
        """(3, H, W) uint8 of item i, before any transform."""
        if self._pid != os.getpid():
            self._cache, self._pid = {}, os.getpid()
        a = self._cache.get(i)
        if a is None:
            a = read_rgb(self.paths[i])
            if self.size is not None and tuple(a.shape[1:]) != tuple(self.size):
                raise DataError(
                    f"{self.paths[i]}: image is {a.shape[1]}x{a.shape[2]}, expected "
                    f"{self.size[0]}x{self.size[1]}"
                )
            if self.cache:
                self._cache[i] = a
        return a

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a data set of {len(self)} images")
        i = i % len(self)
        img = torch.from_numpy(self.read(i).copy())
        if self.transform is not None:
            img = self.transform(img).contiguous()
        return img, lowres_view(img, self.scale), int(self.labels[i])

    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(self.classes)).tolist()
