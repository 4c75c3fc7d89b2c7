"""OpenSlide formats (.svs, .ndpi, .mrxs, generic tiled TIFF, ...) through openslide-python + openslide-bin.

OpenSlide keeps its own tile cache; ``read_region`` takes the top-left corner in level-0 (x, y) and
returns RGBA, transparent (all 0) outside the image. We keep RGB, so padding reads as zero fill."""

from __future__ import annotations

import os

import numpy as np
import torch

from .source import Source


class OpenSlideSource(Source):
    _transient = ("_slide",)

    def __init__(self, path):
        self.path = os.fspath(path)
        self._slide = None
        slide = self._open()
        self.levels = tuple((int(h), int(w)) for w, h in slide.level_dimensions)
        self._downsamples = tuple(float(d) for d in slide.level_downsamples)
        self.shape = (3, *self.levels[0])
        self.dtype = torch.uint8

    def _open(self):
        if self._slide is not None and self._owned():
            return self._slide
        import openslide

        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: no such file")
        try:
            self._slide = openslide.OpenSlide(self.path)
        except (openslide.OpenSlideError, OSError, ValueError) as e:
            # OpenSlideUnsupportedFormatError is an OpenSlideError
            raise ValueError(f"{self.path}: OpenSlide cannot read it ({type(e).__name__}: {e})") from e
        self._mark_opened()
        return self._slide

    @property
    def properties(self) -> dict:
        """The slide's metadata (vendor, microns per pixel, objective power, ...)."""
        return dict(self._open().properties)

    def _read_region(self, level, y0, y1, x0, x1):
        import openslide

        slide = self._open()
        ds = self._downsamples[level]
        try:
            img = slide.read_region((round(x0 * ds), round(y0 * ds)), level, (x1 - x0, y1 - y0))
        except openslide.OpenSlideError as e:
            raise ValueError(f"{self.path}: cannot read level {level} ({type(e).__name__}: {e})") from e
        return np.asarray(img)[..., :3].transpose(2, 0, 1)
