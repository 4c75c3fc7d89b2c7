"""Plain pictures (.bmp, .png, .jpg, .tif strips Pillow reads), decoded once with Pillow.

The decoded array is kept in memory; pickling keeps only the path, so each DataLoader worker decodes its
own copy on first use instead of receiving it through a pipe."""

from __future__ import annotations

import os

import numpy as np
import torch

from .array import _ArrayBacked
from .source import torch_dtype

_MODES = {"L": "L", "1": "L", "P": "RGB", "RGB": "RGB", "RGBA": "RGBA", "LA": "RGBA", "CMYK": "RGB",
          "YCbCr": "RGB", "I;16": "I;16", "I;16B": "I;16", "I;16L": "I;16", "F": "F"}  # fmt: skip


class PlainSource(_ArrayBacked):
    layout = "CHW"
    _transient = ("_t",)

    def __init__(self, path):
        self.path = os.fspath(path)
        self._t = None
        t = self._data()
        self.shape = tuple(int(s) for s in t.shape[1:])
        self.levels = (self.shape[1:],)
        self.dtype = t.dtype

    def _data(self):
        if self._t is not None and self._owned():
            return self._t
        from PIL import Image, UnidentifiedImageError

        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: no such file")
        try:
            with Image.open(self.path) as img:
                img.load()  # decodes now: a truncated file fails here, with its name
                mode = _MODES.get(img.mode)
                if mode is None:
                    raise ValueError(f"unsupported image mode {img.mode!r}")
                if img.mode != mode and mode != "I;16":
                    img = img.convert(mode)
                a = np.array(img)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise ValueError(f"{self.path}: not a readable image ({type(e).__name__}: {e})") from e
        if a.dtype == np.dtype(">u2"):
            a = a.astype(np.uint16)
        torch_dtype(a.dtype, self.path)
        a = a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))
        self._t = torch.from_numpy(a)[None]
        self._mark_opened()
        return self._t
